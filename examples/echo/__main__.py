"""`python -m examples.echo [--host H] [--port P]`: serve the echo app with uvicorn."""

import argparse

import uvicorn

from examples.echo.app import app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m examples.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    args = parser.parse_args(argv)
    print(f"echo: ws://{args.host}:{args.port}/ws", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
