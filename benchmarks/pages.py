"""The docs pages that show the committed results, and the regions that hold them.

A page shows a results file inline, between two comments no renderer shows,
so that it reads the same on the site, on a code host and in an editor:

    <!-- results: durable -->

    | publish to | ... |

    <!-- /results -->

Writing a results file into `benchmarks/results/` (the committed copy) also
rewrites its region of the page, so the page never falls behind the file;
a results file written anywhere else (`--out /tmp/x`) leaves the pages
alone. `python -m benchmarks.pages` rewrites every region from the files,
for a results file edited by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Shown:
    """Where a results file is shown: the page, and how many leading lines it leaves out."""

    page: Path
    skip_lines: int = 0  # the file's own title, which the page's heading replaces


SHOWN = {
    "latest.md": Shown(ROOT / "docs" / "benchmarks.md", skip_lines=2),
    "durable.md": Shown(ROOT / "docs" / "benchmarks.md", skip_lines=2),
    "presence.md": Shown(ROOT / "docs" / "groups.md"),
    "cluster_presence.md": Shown(ROOT / "docs" / "groups.md", skip_lines=2),
}


def _region_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^(<!-- results: {re.escape(name)} -->\n)(.*?)^(<!-- /results -->)$",
        re.MULTILINE | re.DOTALL,
    )


def region(text: str, name: str) -> str:
    """The Markdown between a page's `<!-- results: NAME -->` and `<!-- /results -->`."""
    found = _region_pattern(name).findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one '<!-- results: {name} -->' region, found {len(found)}")
    return found[0][1]


def replace_region(text: str, name: str, markdown: str) -> str:
    """`text` with the region `name` holding `markdown` instead."""
    region(text, name)  # exactly one, or a clear error
    body = f"\n{markdown.strip()}\n\n"  # blank lines: the comments stay HTML blocks of their own
    return _region_pattern(name).sub(lambda m: m[1] + body + m[3], text)


def shown_markdown(results_file: Path) -> str:
    """What the page's region holds for `results_file`: its text without the skipped lines."""
    lines = results_file.read_text().splitlines()
    return "\n".join(lines[SHOWN[results_file.name].skip_lines :])


def show_on_page(results_file: Path) -> Path | None:
    """Rewrite the page region of a committed results file; return the page, or None.

    Only files in `benchmarks/results/` are shown; others leave the pages alone.
    """
    if results_file.resolve().parent != RESULTS or results_file.name not in SHOWN:
        return None
    page = SHOWN[results_file.name].page
    name = results_file.name.removesuffix(".md")
    page.write_text(replace_region(page.read_text(), name, shown_markdown(results_file)))
    return page


def write_results(out: Path, name: str, results: Any, table: str) -> None:
    """Write `name`.json (`results`) and `name`.md (`table`) into `out`, and show the table.

    Into `benchmarks/results/`, this also rewrites the page region of `name`.md.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(table + "\n")
    show_on_page(out / f"{name}.md")


def main() -> int:
    """`python -m benchmarks.pages`: rewrite every page region from its results file."""
    for name in SHOWN:
        page = show_on_page(RESULTS / name)
        print(f"{RESULTS / name} -> {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
