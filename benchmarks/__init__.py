"""Side-by-side WebSocket benchmarks: tether against raw ASGI and its peers, in one run.

Run `python -m benchmarks` (see `--help`); results go to `benchmarks/results/`.
"""
