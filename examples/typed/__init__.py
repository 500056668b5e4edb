"""The typed example: a to-do list over a WebSocket, with typed events and replies.

Run it with `python -m examples.typed`; its AsyncAPI page is at
http://127.0.0.1:8000/asyncapi.
"""
