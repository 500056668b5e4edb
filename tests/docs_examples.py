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

NAMED_BLOCK = re.compile(
    r"^[ \t]*<!--\s*example:\s*(?P<name>[\w-]+)\s*-->[ \t]*\n"
    r"(?P<indent>[ \t]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# A name on a line that is not directly followed by a fence: a typo the pattern above misses.
NAME_LINE = re.compile(r"<!--\s*example:\s*([\w-]+)\s*-->")


@dataclass(frozen=True)
class Example:
    """One named block: where it is and what it says."""

    name: str
    page: Path
    line: int  # the page's line number of the block's first line of code
    source: str

    @property
    def where(self) -> str:
        """`docs/page.md:LINE`, for messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(DOCS.rglob("*.md"))


def find_examples() -> dict[str, Example]:
    """Every named Python block of every page, by name; a name used twice is an error."""
    found: dict[str, Example] = {}
    for page in pages():
        text = page.read_text()
        matches = list(NAMED_BLOCK.finditer(text))
        named_lines = NAME_LINE.findall(text)
        if len(named_lines) != len(matches):
            raise ValueError(f"{page.name}: an `<!-- example: NAME -->` not right above a fence")
        for match in matches:
            name = match["name"]
            if not match["info"].strip().startswith("python"):
                raise ValueError(f"{page.name}: example {name!r} is not a python block")
            if name in found:
                raise ValueError(f"example {name!r} twice: {found[name].where} and {page.name}")
            line = text.count("\n", 0, match.start("body")) + 1
            found[name] = Example(name, page, line, textwrap.dedent(match["body"]))
    return found


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
