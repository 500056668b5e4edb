"""Run one benchmark app under uvicorn (one worker, loopback only), optionally pinned to a core.

    python -m benchmarks.e2e_server --target benchmarks.apps.raw_asgi:app \
        --port 8000 --ws wsproto --cpu 0
"""

from __future__ import annotations

import argparse
import os
import warnings

import uvicorn


def main(argv: list[str] | None = None) -> int:
    """Pin this process if asked, then serve the target on 127.0.0.1 until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="module:attribute of the ASGI app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="websockets", help="uvicorn's websocket implementation")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    # uvicorn's legacy `websockets` protocol is deprecated but still the one asked for.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    uvicorn.run(
        args.target,
        host="127.0.0.1",
        port=args.port,
        ws=args.ws,
        lifespan="off",
        workers=None,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
