"""`isowatch admin create-user`: the first admin, who can then log in; bad input is a clean error."""

from __future__ import annotations

from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard.app import create_app
from isowatch.cli import cli


def test_first_admin_is_created_from_the_command_line_and_can_log_in(tmp_path):
    db = tmp_path / "gw.db"
    result = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(db), "--name", "Street office"],
                                input="a-long-password\na-long-password\n")
    assert result.exit_code == 0, result.output
    assert "user=root role=admin" in result.output
    again = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(db)],
                               env={"ISOWATCH_NEW_PASSWORD": "another-long-one"})
    assert again.exit_code == 1 and "exists" in again.output
    short = CliRunner().invoke(cli, ["admin", "create-user", "x", "--db", str(db)], env={"ISOWATCH_NEW_PASSWORD": "short"})
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    client = TestClient(create_app(db))
    response = client.post("/api/v1/session", json={"username": "root", "password": "a-long-password"})
    assert response.status_code == 200 and response.json()["user"]["role"] == "admin"
    stored = client.get("/api/v1/audit", params={"action": "user.create"}).json()["entries"]
    assert [(e["who"], e["object"]) for e in stored] == [("admin-cli", "user:root")]
