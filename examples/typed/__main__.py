"""`python -m examples.typed [--host H] [--port P]`: serve the to-do list and its AsyncAPI page."""

from __future__ import annotations

import argparse

import uvicorn

from examples.typed.app import app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.typed", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    args = parser.parse_args(argv)
    base = f"{args.host}:{args.port}"
    print(f"typed: ws://{base}/ws, AsyncAPI page at http://{base}/asyncapi", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
