"""The chat example: rooms, nicknames, a browser page, and Redis for several workers.

Run it with `python -m examples.chat` and open http://127.0.0.1:8000 in two
browser tabs. The app itself is in `examples.chat.app`; `create_app()` builds it.
"""
