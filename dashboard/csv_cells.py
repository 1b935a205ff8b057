"""CSV for people who open it in a spreadsheet: a cell that starts with = + - @ (or a tab or carriage return,
which some spreadsheets skip before looking for a formula) is read as a formula, so `=HYPERLINK(...)` in a
team name or a device's text would run on the reader's machine. Such text cells get a leading apostrophe,
which spreadsheets show as text and hide; numbers are left alone (-1.5 is a number, not a formula)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Excel on Chinese Windows reads a CSV without a byte-order mark as GBK and garbles every Chinese name;
# with it, Excel reads UTF-8 (other programs skip it, Python with encoding="utf-8-sig").
BOM = "\ufeff"


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """csv.writer whose every row goes through safe_cell: the only way the dashboard writes CSV."""

    def __init__(self, stream: TextIO) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(value) for value in row])
