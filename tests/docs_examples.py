"""The complete programs of the docs pages: found by name, written out, imported.

A page shows each program inline, in a fenced block, so that it reads the
same on the site, on a code host and in an editor. A block that is a
complete program is named by an HTML comment on the line before it, which
no renderer shows:

    <!-- example: room -->
    ```python title="room.py"
    ...
    ```

The name is the module name: `load("room")` imports the block as a module,
and `write_examples(directory)` writes every block to `directory/room.py`,
so that a program run there (`uvicorn app:app`, `pytest test_room.py`) can
import the others by name, as a reader who saved them would.
"""

from __future__ import annotations

import re
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

NAME = re.compile(r"^\s*<!--\s*example:\s*(?P<name>[\w-]+)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Example:
    """One named block: where it is and what it says."""

    name: str
    page: Path
    line: int  # the page's line number of the block's first line of code
    source: str

    @property
    def where(self) -> str:
        """`page.md:LINE`, for messages."""
        return f"{self.page.name}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.rglob("*.md"))


def find_examples() -> dict[str, Example]:
    """Every named Python block of every page, by name; a name used twice is an error.

    Only names outside fenced blocks count, so a page may show the convention
    itself inside a longer fence (as the architecture page does).
    """
    found: dict[str, Example] = {}
    for page in pages():
        for example in page_examples(page):
            if example.name in found:
                first = found[example.name].where
                raise ValueError(f"example {example.name!r} twice: {first} and {example.where}")
            found[example.name] = example
    return found


def page_examples(page: Path) -> list[Example]:
    """The named Python blocks of one page, in order."""
    lines = page.read_text().splitlines(keepends=True)
    examples: list[Example] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index].rstrip("\n"))
        named = NAME.match(lines[index])
        if named is not None:
            opening = FENCE.match(lines[index + 1].rstrip("\n")) if index + 1 < len(lines) else None
            if opening is None or not opening["info"].strip().startswith("python"):
                raise ValueError(f"{page.name}:{index + 1}: a name not right above a python fence")
            index += 1
        if opening is None:
            index += 1
            continue
        closing = f"{opening['indent']}{opening['fence']}"
        end = next((i for i in range(index + 1, len(lines)) if lines[i].rstrip() == closing), None)
        if end is None:
            raise ValueError(f"{page.name}:{index + 1}: a fence that is never closed")
        if named is not None:
            body = textwrap.dedent("".join(lines[index + 1 : end]))
            examples.append(Example(named["name"], page, index + 2, body))
        index = end + 1
    return examples


EXAMPLES = find_examples()


def write_examples(directory: Path) -> Path:
    """Write every example to `directory/NAME.py`, as a reader would save them; return it."""
    for example in EXAMPLES.values():
        (directory / f"{example.name}.py").write_text(example.source)
    return directory


def load(name: str) -> ModuleType:
    """Import the example `name` afresh, as a module of its own.

    It is compiled with the page as its file name and its lines where they are
    on the page, so a traceback points into the page and shows the line.
    Its module is registered under a fresh name, so two loads share nothing.
    """
    example = EXAMPLES[name]
    module_name = f"docs_example_{name}_{uuid.uuid4().hex[:8]}"
    module = ModuleType(module_name)
    module.__file__ = str(example.page)
    sys.modules[module_name] = module  # dataclasses and pydantic look their module up
    code = compile("\n" * (example.line - 1) + example.source, str(example.page), "exec")
    exec(code, module.__dict__)
    return module
