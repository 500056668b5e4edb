"""The docs pages show the committed results files as they are; writing one rewrites its page."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import pages
from benchmarks.pages import RESULTS, SHOWN, region, replace_region, show_on_page, shown_markdown


@pytest.mark.parametrize("name", sorted(SHOWN))
def test_the_page_shows_the_committed_results_file(name: str) -> None:
    shown = SHOWN[name]
    on_page = region(shown.page.read_text(), name.removesuffix(".md"))
    assert on_page.strip() == shown_markdown(RESULTS / name).strip(), (
        f"{shown.page.name} does not show benchmarks/results/{name} as it is: "
        "python -m benchmarks.pages rewrites the page from the file"
    )


def test_writing_a_results_file_rewrites_only_its_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n<!-- results: latest -->\n\nold\n\n<!-- /results -->\n\nafter\n"
        "<!-- results: durable -->\nkept\n<!-- /results -->\n"
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "latest.md").write_text("# tether benchmarks\n\n| a |\n|---|\n| 1 |\n")
    monkeypatch.setattr(pages, "RESULTS", results)
    monkeypatch.setattr(pages, "SHOWN", {"latest.md": pages.Shown(page, skip_lines=2)})

    assert show_on_page(results / "latest.md") == page
    assert page.read_text() == (
        "# Page\n\n<!-- results: latest -->\n\n| a |\n|---|\n| 1 |\n\n<!-- /results -->\n\nafter\n"
        "<!-- results: durable -->\nkept\n<!-- /results -->\n"
    )


def test_a_results_file_written_elsewhere_leaves_the_pages_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "latest.md"
    elsewhere.write_text("# tether benchmarks\n\nnot the committed results\n")
    before = {name: shown.page.read_text() for name, shown in SHOWN.items()}
    assert show_on_page(elsewhere) is None
    assert {name: shown.page.read_text() for name, shown in SHOWN.items()} == before


def test_a_page_without_its_region_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected one '<!-- results: durable -->' region"):
        replace_region("no region here\n", "durable", "| a |")
