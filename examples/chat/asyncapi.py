"""`python -m examples.chat.asyncapi > chat-asyncapi.json`: print the chat's AsyncAPI document.

The same document the running chat serves at `/asyncapi.json` (for the
default `127.0.0.1:8000`).
"""

from __future__ import annotations

import json

from examples.chat.app import asyncapi_options, create_app
from tether.asyncapi import generate


def main() -> None:
    """Print the AsyncAPI 3 document of the chat app as indented JSON."""
    document = generate(create_app(), **asyncapi_options())
    print(json.dumps(document, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
