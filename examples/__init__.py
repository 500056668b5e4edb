"""Runnable tether examples; each one starts with `python -m examples.<name>`.

- `echo`: the smallest controller.
- `chat`: rooms, nicknames, group fan-out, a browser page, Redis for several workers.
- `dashboard`: a background producer pushing live data to many clients.
- `typed`: typed messages routed with `@on`, and their AsyncAPI page.

Each app also answers a browser's `/favicon.ico` with 204 (`favicon.py`).
"""
