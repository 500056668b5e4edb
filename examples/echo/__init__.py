"""The smallest tether app: every text message comes back prefixed with `echo: `.

Run it with `python -m examples.echo`, then `python -m websockets ws://127.0.0.1:8000/ws`.
"""
