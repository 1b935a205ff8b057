"""`isowatch admin create-user`: the first admin, who can then log in; bad input is a clean error."""

from __future__ import annotations

import re

from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard.app import create_app
from isowatch_app.cli import cli
from tests.conftest import REPO_ROOT

REGISTRY = REPO_ROOT / "tests" / "fixtures" / "registry.csv"


def test_first_admin_is_created_from_the_command_line_and_can_log_in(tmp_path):
    db = tmp_path / "gw.db"
    result = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(db), "--name", "Street office",
                                      "--create-db"], input="a-long-password\na-long-password\n")
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


def test_create_user_refuses_a_database_that_does_not_exist(tmp_path):
    """The default --db is a relative path: run from the wrong directory it used to create an empty database,
    report success, and leave a user the running gateway never sees."""
    missing = tmp_path / "typo" / "isowatch.db"
    result = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(missing)],
                                env={"ISOWATCH_NEW_PASSWORD": "a-long-password"})
    assert result.exit_code == 1, result.output
    assert f"no database at {missing}" in result.output and "--create-db" in result.output
    assert "user=root" not in result.output
    assert not missing.exists() and not missing.parent.exists()
    here = tmp_path / "isowatch.db"
    created = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(here), "--create-db"],
                                 env={"ISOWATCH_NEW_PASSWORD": "a-long-password"})
    assert created.exit_code == 0, created.output
    assert f"db={here}" in created.output and here.exists()


def test_a_failed_login_says_so_in_chinese_and_english(tmp_path):
    """Before anyone is logged in the page cannot know the reader's language: the error shows in both."""
    db = tmp_path / "gw.db"
    created = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(db), "--create-db"],
                                 env={"ISOWATCH_NEW_PASSWORD": "a-long-password"})
    assert created.exit_code == 0, created.output
    client = TestClient(create_app(db))
    form = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    failed = client.post("/login", data={"username": "root", "password": "wrong-password", "csrf": csrf})
    assert failed.status_code == 200 and "/login?error=login_failed" in str(failed.url)
    assert "用户名或密码错误。" in failed.text and "Wrong username or password." in failed.text
    made_up = client.get("/login", params={"error": "<b>call 110</b>"})
    assert "call 110" not in made_up.text  # only known errors are shown, not whatever the URL says


def test_other_admin_commands_refuse_a_missing_database_too(tmp_path):
    missing = tmp_path / "isowatch.db"
    for args in (["register-device", "cam-1", "hh-1"], ["start-isolation", "hh-1", "2026-11-20"],
                 ["resolve", "1", "false_alarm", "--staff", "chen"], ["extend-isolation", "1", "3"]):
        result = CliRunner().invoke(cli, ["admin", *args, "--db", str(missing)])
        assert result.exit_code == 1 and f"no database at {missing}" in result.output, (args, result.output)
        assert not missing.exists()
    imported = CliRunner().invoke(cli, ["admin", "import", str(REGISTRY), "--db", str(missing)])
    assert imported.exit_code == 0, imported.output  # importing the registry is how a new database starts
