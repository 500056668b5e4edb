"""`python -m examples.chat.asyncapi`: print the chat's AsyncAPI document.

The same document the running chat serves at `/asyncapi.json` (for the
default `127.0.0.1:8000`). `--docs` writes it into the AsyncAPI docs page
instead, into the collapsed JSON block under `<!-- asyncapi: chat -->`,
which a test checks against the code.
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from pathlib import Path

from examples.chat.app import asyncapi_options, create_app
from tether.asyncapi import generate

PAGE = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.md"
# The marker sits above the collapsed block (`??? example`): a comment inside it would
# render as an empty paragraph.
BLOCK = re.compile(
    r"^<!-- asyncapi: chat -->\n\?\?\? [^\n]*\n\n"
    r"(?P<indent>[ ]*)```json\n(?P<body>.*?)^(?P=indent)```$",
    re.MULTILINE | re.DOTALL,
)


def document_json() -> str:
    """The AsyncAPI 3 document of the chat app as indented JSON, ending in a newline."""
    document = generate(create_app(), **asyncapi_options())
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _block(text: str) -> re.Match[str]:
    found = list(BLOCK.finditer(text))
    if len(found) != 1:
        raise ValueError(f"{PAGE.name}: expected one JSON block after <!-- asyncapi: chat -->")
    return found[0]


def documented(page: Path = PAGE) -> str:
    """The document as the docs page shows it (the block's JSON, unindented)."""
    return textwrap.dedent(_block(page.read_text())["body"])


def write_docs(page: Path = PAGE) -> None:
    """Rewrite the page's block with the document the code generates now."""
    text = page.read_text()
    block = _block(text)
    body = textwrap.indent(document_json(), block["indent"])
    page.write_text(text[: block.start("body")] + body + text[block.end("body") :])


def main() -> None:
    """Print the document, or with `--docs` write it into docs/asyncapi.md."""
    parser = argparse.ArgumentParser(prog="python -m examples.chat.asyncapi", description=__doc__)
    parser.add_argument("--docs", action="store_true", help=f"rewrite the block in {PAGE.name}")
    if parser.parse_args().docs:
        write_docs()
    else:
        print(document_json(), end="")


if __name__ == "__main__":
    main()
