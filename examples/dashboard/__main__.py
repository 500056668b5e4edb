"""`python -m examples.dashboard [--host H] [--port P] [--interval S]`: serve the dashboard."""

from __future__ import annotations

import argparse

import uvicorn

from examples.dashboard.app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--interval", type=float, default=0.5, help="seconds between readings (default 0.5)"
    )
    args = parser.parse_args(argv)
    print(f"dashboard: http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_app(args.interval), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
