"""User management: admins create, disable, enable, reset and set teams on pages; everyone
changes their own password; each change is in the audit log; the password policy applies; non-admins are
refused."""

from __future__ import annotations

import sqlite3

from fastapi.testclient import TestClient

from dashboard.app import create_app
from tests.dashboard.world import PASSWORD, login
from tests.support import query

NEW_PASSWORD = "plum-river-lantern-42"


def audit_actions(db_path, username: str) -> list[tuple[str, str]]:
    """What the test did to the user (the seeding's own rows are by 'test'; logins are auth.*)."""
    return query(db_path, "SELECT who, action FROM audit_log WHERE object = ? AND who != 'test' AND action LIKE 'user.%' "
                 "ORDER BY id", (f"user:{username}",))


def can_log_in(seeded, username: str, password: str) -> bool:
    with TestClient(create_app(seeded.db_path)) as client:
        return client.post("/api/v1/session", json={"username": username, "password": password}).status_code == 200


def test_an_admin_manages_users_on_pages_and_each_change_is_audited(seeded):
    conn = sqlite3.connect(seeded.db_path)
    with conn:
        conn.execute("UPDATE users SET language = 'zh' WHERE username = 'admin'")
    conn.close()
    with TestClient(create_app(seeded.db_path)) as admin:
        csrf = login(admin, "admin")
        page = admin.get("/users").text
        assert "新建用户" in page and "陈社工 · 社工" in page and "幸福里一组" in page  # pickers by name
        created = admin.post("/users", data={"csrf": csrf, "username": "qian", "display_name": "钱社工", "role": "social",
                                             "language": "zh", "password": NEW_PASSWORD, "teams": ["team-2"]})
        assert created.status_code == 200 and "已创建用户 qian" in created.text
        weak = admin.post("/users", data={"csrf": csrf, "username": "sun2", "role": "social", "password": "password123"})
        assert weak.status_code == 422 and "常用密码" in weak.text
        taken = admin.post("/users", data={"csrf": csrf, "username": "qian", "role": "social", "password": NEW_PASSWORD})
        assert taken.status_code == 409 and "用户名已被使用" in taken.text
        assert can_log_in(seeded, "qian", NEW_PASSWORD)

        # chen is logged in elsewhere; disabling ends that session at once.
        with TestClient(create_app(seeded.db_path)) as chen:
            login(chen, "chen")
            assert admin.post("/users/chen/disable", data={"csrf": csrf}).status_code == 200
            assert chen.get("/api/v1/me").status_code == 401
        assert not can_log_in(seeded, "chen", PASSWORD)
        assert "已停用" in admin.get("/users").text
        admin.post("/users/chen/enable", data={"csrf": csrf})
        assert can_log_in(seeded, "chen", PASSWORD)

        assert admin.post("/users/chen/password", data={"csrf": csrf, "password": "abc"}).status_code == 422
        assert admin.post("/users/chen/password", data={"csrf": csrf, "password": NEW_PASSWORD}).status_code == 200
        assert can_log_in(seeded, "chen", NEW_PASSWORD) and not can_log_in(seeded, "chen", PASSWORD)

        admin.post("/users/qian/teams", data={"csrf": csrf, "teams": ["team-1", "team-2"]})
        assert query(seeded.db_path, "SELECT team FROM user_teams WHERE username = 'qian' ORDER BY team") == [
            ("team-1",), ("team-2",)]
        assert admin.post("/users/qian/teams", data={"csrf": csrf, "teams": ["team-9"]}).status_code == 422
        assert admin.post("/users/admin/disable", data={"csrf": csrf}).status_code == 422  # not oneself
    assert audit_actions(seeded.db_path, "qian") == [("admin", "user.create"), ("admin", "user.teams")]
    assert audit_actions(seeded.db_path, "chen") == [("admin", "user.disable"), ("admin", "user.enable"),
                                                     ("admin", "user.password")]


def test_only_admins_manage_users(seeded):
    with TestClient(create_app(seeded.db_path)) as client:
        csrf = login(client, "wang")
        assert client.get("/users").status_code == 403
        assert client.post("/users/chen/disable", data={"csrf": csrf}).status_code == 403
        assert client.post("/api/v1/users/chen/disable", headers={"X-CSRF-Token": csrf}).status_code == 403
        assert "/users" not in client.get("/").text.split("<main>")[0]


def test_everyone_changes_their_own_password_and_other_sessions_end(seeded):
    with TestClient(create_app(seeded.db_path)) as phone, TestClient(create_app(seeded.db_path)) as desk:
        login(desk, "auditor")
        csrf = login(phone, "auditor")  # auditors change nothing else, but their own password
        assert "修改密码" in phone.get("/me/password").text or "Change password" in phone.get("/me/password").text
        wrong = phone.post("/me/password", data={"csrf": csrf, "current": "nope-nope-nope", "new": NEW_PASSWORD})
        assert wrong.status_code == 422
        weak = phone.post("/me/password", data={"csrf": csrf, "current": PASSWORD, "new": "aaaaaaaaaaaa"})
        assert weak.status_code == 422
        changed = phone.post("/me/password", data={"csrf": csrf, "current": PASSWORD, "new": NEW_PASSWORD})
        assert changed.status_code == 200 and changed.url.path == "/me/password"
        assert phone.get("/api/v1/me").status_code == 200  # this session stays
        assert desk.get("/api/v1/me").status_code == 401  # the other one ended
    assert can_log_in(seeded, "auditor", NEW_PASSWORD)
    assert audit_actions(seeded.db_path, "auditor") == [("auditor", "user.password_change_refused"),
                                                        ("auditor", "user.password_change")]


def test_the_users_api(seeded):
    with TestClient(create_app(seeded.db_path)) as admin:
        csrf = login(admin, "admin")
        headers = {"X-CSRF-Token": csrf}
        assert admin.post("/api/v1/users/zheng/disable", headers=headers).status_code == 204
        listed = {u["username"]: u["active"] for u in admin.get("/api/v1/users").json()}
        assert listed["zheng"] is False and listed["chen"] is True
        assert admin.post("/api/v1/users/zheng/password", json={"password": "1234567890"},
                          headers=headers).status_code == 422
        assert admin.post("/api/v1/users/nobody/enable", headers=headers).status_code == 422
        assert admin.put("/api/v1/users/zheng/teams", json={"teams": ["team-1"]}, headers=headers).status_code == 204
    conn = sqlite3.connect(seeded.db_path)
    assert conn.execute("SELECT active FROM users WHERE username = 'zheng'").fetchone() == (0,)
    conn.close()
