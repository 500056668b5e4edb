"""The close-code table in code and the one on the errors page say the same thing."""

from __future__ import annotations

import ast
from pathlib import Path

from starlette import status

import tether.close_codes
from tether.close_codes import CLOSE_CODES, CloseCode

ROOT = Path(__file__).resolve().parents[1]
ERRORS_PAGE = ROOT / "docs" / "errors.md"
PACKAGE = ROOT / "tether"
SECTION = "## Every close code tether sends"


def code_tables(page: str) -> list[dict[int, str]]:
    """The tables of the section whose first column is `Code`, as {code: name}."""
    start = page.index(SECTION)
    end = page.find("\n## ", start + len(SECTION))
    section = page[start : end if end != -1 else len(page)]
    tables: list[dict[int, str]] = []
    rows: dict[int, str] | None = None
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|"):
            rows = None
        elif cells[0] == "Code":
            rows = {}
            tables.append(rows)
        elif rows is not None and cells[0].isdigit():
            rows[int(cells[0])] = cells[1]
    return tables


def test_the_errors_page_lists_every_code_in_the_table_and_no_other() -> None:
    sent, reported = code_tables(ERRORS_PAGE.read_text())
    assert sent == {row.code: row.name for row in CLOSE_CODES if row.sent}
    assert reported == {row.code: row.name for row in CLOSE_CODES if not row.sent}


def test_the_reported_codes_are_the_ones_servers_report() -> None:
    assert {row.code for row in CLOSE_CODES if not row.sent} == {1005, 1006, 1012}


def test_every_constant_is_a_row_and_every_row_a_constant() -> None:
    constants = {
        name: value
        for name, value in vars(tether.close_codes).items()
        if name.isupper() and isinstance(value, int)
    }
    assert sorted(constants.values()) == [row.code for row in CLOSE_CODES]
    assert set(tether.close_codes.__all__) == {*constants, "CLOSE_CODES", "CloseCode"}


def test_the_numbers_are_starlettes() -> None:
    registry = {value: name for name, value in vars(status).items() if name.startswith("WS_")}
    for row in CLOSE_CODES:
        assert isinstance(row, CloseCode)
        rfc_words = registry[row.code].split("_", 2)[2].lower().replace("_", " ")
        assert row.name.lower().split()[0] == rfc_words.split()[0], (row, rfc_words)


def test_the_page_parser_reads_a_table_row_by_row() -> None:
    page = (
        f"{SECTION}\n\n| Code | Name | When |\n|---|---|---|\n| 1000 | Normal closure | x |\n"
        "| yours | | y |\n\ntext\n\n| Code | Name |\n|---|---|\n| 1006 | Abnormal closure |\n"
        "\n| Status | When |\n|---|---|\n| 403 | refused |\n\n## Next\n\n| Code | Name |\n"
        "| 1 | not this section |\n"
    )
    assert code_tables(page) == [{1000: "Normal closure"}, {1006: "Abnormal closure"}]


def test_no_module_writes_a_close_code_as_a_number() -> None:
    numbers = {row.code for row in CLOSE_CODES}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if where == "close_codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in numbers:
                found.append(f"{where}:{node.lineno}: {node.value}")
    assert found == [], "use the constants of tether.close_codes"
