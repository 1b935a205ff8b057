"""Password policy: `aaaaaaaaaa` and `1234567890` were accepted. Short, common (the shipped list),
repetitive, sequential and username-equal passwords are refused with a message in Chinese and English,
through the API and the CLI alike."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from dashboard import accounts
from dashboard.app import create_app
from dashboard.password_policy import WeakPassword, check_password, common_passwords
from isowatch.clock import SystemClock
from isowatch_app.cli import cli
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures
from tests.dashboard.world import login

WEAK = {
    "aaaaaaaaaa": "repetitive",
    "1234567890": "common",
    "0123456789": "repetitive",
    "abcdefghijkl": "repetitive",
    "9876543210": "repetitive",
    "abcabcabcabc": "repetitive",
    "qwertyuiop": "common",
    "Password123": "common",
    "1q2w3e4r5t": "common",
    "manchester": "common",
    "short": "too_short",
    "Xiaoming-2024": "username",
}


def test_the_shipped_list_is_real_common_password_data():
    common = common_passwords()
    assert len(common) > 10_000
    assert {"123456", "password", "qwerty", "iloveyou", "1qaz2wsx", "password123"} <= common


@pytest.mark.parametrize("password, reason", WEAK.items())
def test_weak_passwords_are_refused_by_the_policy(password, reason):
    with pytest.raises(WeakPassword) as refused:
        check_password(password, "xiaoming-2024")
    assert refused.value.reason == reason


def test_the_api_refuses_weak_passwords_in_both_languages_and_takes_a_strong_one(seeded):
    client = TestClient(create_app(seeded.db_path))
    csrf = login(client, "admin")
    for number, password in enumerate(WEAK):
        answer = client.post("/api/v1/users", headers={"X-CSRF-Token": csrf},
                             json={"username": "Xiaoming-2024" if password.startswith("X") else f"new-{number}",
                                   "role": "social", "password": password})
        assert answer.status_code == 422, (password, answer.text)
        message = answer.text
        assert "密码" in message and "password" in message.lower(), message
    ok = client.post("/api/v1/users", headers={"X-CSRF-Token": csrf},
                     json={"username": "new-ok", "role": "social", "password": "tide-lantern-41-orchard"})
    assert ok.status_code == 201, ok.text


def test_set_password_applies_the_same_policy(seeded):
    conn = sqlite3.connect(seeded.db_path)
    with pytest.raises(WeakPassword):
        accounts.set_password(conn, "chen", "1234567890", by="test", now=SystemClock().now())
    conn.close()


@pytest.mark.parametrize("password, says", [("aaaaaaaaaa", "may not be a repeated character"),
                                             ("1234567890", "one of the most common passwords")])
def test_the_cli_refuses_weak_passwords(tmp_path, password, says):
    result = CliRunner().invoke(cli, ["admin", "create-user", "root", "--db", str(tmp_path / "gw.db"), "--create-db"],
                                env={"ISOWATCH_NEW_PASSWORD": password})
    assert result.exit_code == 1 and says in result.output and "密码" in result.output, result.output
