"""The dashboard example: a background producer pushes live readings to every client.

Run it with `python -m examples.dashboard` and open http://127.0.0.1:8000.
"""
