"""`python -m examples.chat`: serve the chat on http://127.0.0.1:8000 with uvicorn.

Options: `--host`, `--port`, `--redis URL` (default: `$TETHER_REDIS_URL`) to
fan messages out through Redis, `--workers N` to run N processes, which
needs Redis so that a message reaches the members served by the other workers,
and `--history` to keep each room's last messages, so that a page that lost
its connection gets what it missed when it comes back.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from examples.chat.app import create_app


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat",
        description="Serve the tether chat example.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("TETHER_REDIS_URL"),
        help="Redis URL for groups across processes (default: $TETHER_REDIS_URL)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (>1 needs --redis)")
    parser.add_argument(
        "--history",
        action="store_true",
        help="rooms keep their last messages, recovered by a page that reconnects",
    )
    args = parser.parse_args(argv)
    if args.workers > 1 and not args.redis:
        parser.error("--workers needs --redis URL (or TETHER_REDIS_URL): workers share rooms")

    print(f"chat: http://{args.host}:{args.port}/", flush=True)
    if args.workers == 1:
        app = create_app(args.port, redis_url=args.redis, host=args.host, history=args.history)
        uvicorn.run(app, host=args.host, port=args.port)
        return
    # Each worker process imports the app by name; the environment configures it.
    os.environ["TETHER_CHAT_HOST"] = args.host
    os.environ["TETHER_CHAT_PORT"] = str(args.port)
    os.environ["TETHER_REDIS_URL"] = args.redis
    os.environ["TETHER_CHAT_HISTORY"] = "1" if args.history else ""
    uvicorn.run("examples.chat.app:app", host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
