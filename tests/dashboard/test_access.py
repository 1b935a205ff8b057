"""Authorisation: every API route in the OpenAPI schema, called by every role (and by nobody), gets the right answer.

The table below must name every operation the schema lists, so a new route without a decision fails here.
Config pushes go through a real Mosquitto.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.deps import authenticated, session_user
from dashboard.routes import alerts, audit, auth, devices, events, households, reports, users
from dashboard.routes.registry_api import RegistryDesk
from gateway.device_config import push_device_config
from isowatch.clock import SystemClock
from tests.dashboard.world import USERS, login

ROLES = ["anonymous", *USERS]
TEAM_1 = {"wang", "li", "zhao", "chen"}
EVERYONE = set(USERS)
STAFF_CHANGERS = EVERYONE - {"auditor"}
ALL_SEEING = {"admin", "auditor"}


def allowed(route: str, user: str, s) -> set[int] | int:
    """The expected status of `route` for `user` (200 family when allowed)."""
    if route.startswith(("PUT /api/v1/registry", "POST /api/v1/registry")):
        return registry_expected(user)
    if user == "anonymous":
        return 422 if route == "POST /api/v1/session" else 401
    own = ALL_SEEING | TEAM_1  # may see team-1's household hh-3-502 and its alert, device
    other = ALL_SEEING | {"zheng"}  # team-2's hh-9-301
    table = {
        "POST /api/v1/session": 422,  # without a body; logging in itself is walked by login()
        "GET /api/v1/me": 200,
        "POST /api/v1/me/language": 200,
        "GET /api/v1/alerts": 200,
        "GET /api/v1/alerts/{own}": 200 if user in own else 404,
        "GET /api/v1/alerts/{other}": 200 if user in other else 404,
        "POST /api/v1/alerts/{own}/acknowledge": (200 if user in own - {"auditor"} else 403 if user == "auditor" else 404),
        "POST /api/v1/alerts/{own}/resolve": (200 if user in own - {"auditor"} else 403 if user == "auditor" else 404),
        "GET /api/v1/households": 200,
        "GET /api/v1/households/{own}": 200 if user in own else 404,
        "GET /api/v1/households/{other}": 200 if user in other else 404,
        "GET /api/v1/events": 200,
        "GET /api/v1/events/export.csv": 200,
        "GET /api/v1/reports/response": 200,
        "GET /api/v1/reports/response.csv": 200,
        "GET /api/v1/devices": 200,
        "GET /api/v1/devices/{own}": 200 if user in own else 404,
        "POST /api/v1/devices/{own}/config": (200 if user == "admin" else 403 if user in own else 404),
        "GET /api/v1/audit": 200 if user in ALL_SEEING else 403,
        "GET /api/v1/users": 200 if user == "admin" else 403,
        "POST /api/v1/users": 201 if user == "admin" else 403,
        # A user that does not exist: an admin gets the API's own 422, everyone else the refusal.
        "POST /api/v1/users/{nobody}/disable": 422 if user == "admin" else 403,
        "POST /api/v1/users/{nobody}/enable": 422 if user == "admin" else 403,
        "POST /api/v1/users/{nobody}/password": 422 if user == "admin" else 403,
        "PUT /api/v1/users/{nobody}/teams": 422 if user == "admin" else 403,
        "POST /api/v1/me/password": 422,  # the walk sends a wrong current password
    }
    return table[route]


def registry_expected(user: str) -> int | set[int]:
    # The registry API: admin token or an admin's session. The walk sends minimal bodies, so an admin
    # gets the API's own answers (validation, not found), never a refusal.
    if user == "anonymous":
        return 401
    return {200, 201, 404, 409, 422} if user == "admin" else 403


BODIES = {
    "POST /api/v1/me/language": {"language": "zh"},
    "POST /api/v1/alerts/{own}/resolve": {"verdict": "false_alarm", "note": "checked by phone"},
    "POST /api/v1/devices/{own}/config": {"version": "v2", "heartbeat_s": 20},
    "POST /api/v1/users": {"username": "new-user", "role": "social", "password": "long-enough-pw"},
    "POST /api/v1/users/{nobody}/password": {"password": "plum-river-lantern-42"},
    "PUT /api/v1/users/{nobody}/teams": {"teams": []},
    "POST /api/v1/me/password": {"current": "not-my-password", "new": "plum-river-lantern-42"},
}


def concrete(route: str, s) -> tuple[str, str]:
    method, path = route.split(" ", 1)
    for mark, value in (("alerts/{own}", f"alerts/{s.alert_own}"), ("alerts/{other}", f"alerts/{s.alert_other}"),
                        ("households/{own}", "households/hh-3-502"), ("households/{other}", "households/hh-9-301"),
                        ("devices/{own}", "devices/cam-3502"), ("users/{nobody}", "users/nobody")):
        path = path.replace(mark, value)
    return method, path


def schema_operations(app) -> set[str]:
    ops = set()
    for path, item in app.openapi()["paths"].items():
        for method in item:
            ops.add(f"{method.upper()} {path}")
    return ops


WALKED = [
    "POST /api/v1/session", "GET /api/v1/me", "POST /api/v1/me/language", "GET /api/v1/alerts",
    "GET /api/v1/alerts/{own}", "GET /api/v1/alerts/{other}", "POST /api/v1/alerts/{own}/acknowledge",
    "POST /api/v1/alerts/{own}/resolve", "GET /api/v1/households", "GET /api/v1/households/{own}",
    "GET /api/v1/households/{other}", "GET /api/v1/events", "GET /api/v1/events/export.csv",
    "GET /api/v1/reports/response", "GET /api/v1/reports/response.csv", "GET /api/v1/devices",
    "GET /api/v1/devices/{own}", "POST /api/v1/devices/{own}/config", "GET /api/v1/audit", "GET /api/v1/users",
    "POST /api/v1/users", "POST /api/v1/users/{nobody}/disable", "POST /api/v1/users/{nobody}/enable",
    "POST /api/v1/users/{nobody}/password", "PUT /api/v1/users/{nobody}/teams", "POST /api/v1/me/password",
]


def _template(route: str) -> str:
    method, path = route.split(" ", 1)
    for mark, name in (("alerts/{own}", "alerts/{alert_id}"), ("alerts/{other}", "alerts/{alert_id}"),
                       ("households/{own}", "households/{household}"), ("households/{other}", "households/{household}"),
                       ("devices/{own}", "devices/{device}"), ("users/{nobody}", "users/{username}")):
        path = path.replace(mark, name)
    return f"{method} {path}"


@pytest.fixture
def world(seeded):
    return seeded, create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir)


@pytest.fixture
def world_with_broker(seeded, mosquitto):
    broker = mosquitto.add_user("operator", full_access=True)
    app = create_app(seeded.db_path, snapshot_dir=seeded.snapshot_dir,
                     admin=RegistryDesk(seeded.db_path, SystemClock(), admin_token=""),
                     push_config=lambda site, household, config: push_device_config(broker, site, household, config))
    return seeded, app


def test_the_walk_covers_every_operation_in_the_schema(world):
    _, app = world
    walked = {_template(r) for r in WALKED}
    registry = {op for op in schema_operations(app) if "/api/v1/registry/" in op}
    assert schema_operations(app) - registry == walked


@pytest.mark.parametrize("user", ROLES)
def test_every_api_route_answers_each_role_as_its_permissions_say(world_with_broker, user):
    s, app = world_with_broker
    client = TestClient(app)
    headers = {}
    if user != "anonymous":
        headers["X-CSRF-Token"] = login(client, user)
    routes = WALKED + sorted(op for op in schema_operations(app) if "/api/v1/registry/" in op)
    failures = []
    for route in routes:
        method, path = concrete(route, s)
        path = path.replace("{period_id}", "1").replace("{alert_id}", str(s.alert_own))
        response = client.request(method, path, json=BODIES.get(route, {} if method != "GET" else None),
                                  headers=headers)
        expected = allowed(route, user, s)
        ok = response.status_code in expected if isinstance(expected, set) else response.status_code == expected
        if not ok:
            failures.append(f"{route}: {response.status_code} (expected {expected}) {response.text[:120]}")
    assert not failures, "\n".join(failures)


def test_staff_see_only_their_teams_households_and_events(world):
    s, app = world
    seen = {}
    for user in ("admin", "auditor", "chen", "zheng"):
        client = TestClient(app)
        login(client, user)
        homes = {h["household"] for h in client.get("/api/v1/households").json()}
        logged = {e["household"] for e in client.get("/api/v1/events", params={"limit": 500}).json()["entries"]}
        board = {a["household"] for a in client.get("/api/v1/alerts").json()}
        csv_homes = {line.split(",")[2] for line in client.get("/api/v1/events/export.csv").text.splitlines()[1:]}
        seen[user] = (homes, logged, board, csv_homes)
    assert seen["admin"][0] == seen["auditor"][0] == {"hh-3-502", "hh-7-101", "hh-9-301"}
    assert seen["chen"] == ({"hh-3-502", "hh-7-101"}, {"hh-3-502", "hh-7-101"}, {"hh-3-502"}, {"hh-3-502", "hh-7-101"})
    assert seen["zheng"] == ({"hh-9-301"}, {"hh-9-301"}, {"hh-9-301"}, {"hh-9-301"})


def test_every_route_is_guarded_unless_it_is_the_login_itself():
    """Deny by default: area routers carry the session guard; the auth router's routes opt in one by one."""
    for area in (alerts, households, events, reports, devices, audit, users):
        assert any(d.dependency is authenticated for d in area.router.dependencies), area.__name__
    public = {("/login", "GET"), ("/login", "POST"), ("/api/v1/session", "POST")}
    for route in auth.router.routes:
        for method in route.methods:
            guarded = any(d.call is session_user for d in route.dependant.dependencies)
            assert guarded or (route.path, method) in public, f"{method} {route.path} has no session guard"


def test_pages_redirect_to_login_and_forms_need_the_csrf_token(world):
    s, app = world
    client = TestClient(app)
    for page in ("/", "/households", "/households/hh-3-502", "/events", "/events.csv", "/reports", "/devices",
                 "/audit", f"/alerts/{s.alert_own}", f"/snapshots/{s.snapshot_sha}"):
        response = client.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), page
    assert client.get("/alerts/stream", follow_redirects=False).status_code == 401  # EventSource stops on it
    login(client, "chen")
    forged = client.post(f"/alerts/{s.alert_own}/acknowledge", data={"csrf": "guess"}, follow_redirects=False)
    assert forged.status_code == 403
    no_header = client.post(f"/api/v1/alerts/{s.alert_own}/acknowledge")
    assert no_header.status_code == 403
    assert client.get(f"/api/v1/alerts/{s.alert_own}").json()["acknowledged_by"] is None


def test_session_cookie_is_httponly_samesite_and_secure_over_tls(world):
    s, app = world
    plain = TestClient(app).post("/api/v1/session", json={"username": "chen", "password": "correct-horse-battery"})
    cookie = plain.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    tls = TestClient(app, base_url="https://gateway.example").post(
        "/api/v1/session", json={"username": "chen", "password": "correct-horse-battery"})
    assert "secure" in tls.headers["set-cookie"].lower()


def test_login_is_rate_limited_per_user_and_audited(world):
    s, app = world
    client = TestClient(app)
    codes = [client.post("/api/v1/session", json={"username": "chen", "password": f"wrong-{i}"}).status_code
             for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    # Even the right password is refused while limited, so guessing cannot continue.
    assert client.post("/api/v1/session", json={"username": "chen", "password": "correct-horse-battery"}).status_code == 429
    assert client.post("/api/v1/session", json={"username": "li", "password": "correct-horse-battery"}).status_code == 200
    admin = TestClient(app)
    login(admin, "admin")
    actions = [e["action"] for e in admin.get("/api/v1/audit", params={"who": "chen"}).json()["entries"]]
    assert actions.count("auth.login_failed") == 5 and actions.count("auth.login_refused") == 3


def test_acknowledge_and_resolve_go_through_the_alert_library_and_are_audited(world):
    s, app = world
    client = TestClient(app)
    csrf = login(client, "chen")
    acked = client.post(f"/api/v1/alerts/{s.alert_own}/acknowledge", headers={"X-CSRF-Token": csrf}).json()
    assert acked["acknowledged_by"] == "chen-social" and acked["state"] == "acknowledged"
    done = client.post(f"/api/v1/alerts/{s.alert_own}/resolve", headers={"X-CSRF-Token": csrf},
                       json={"verdict": "authorised_exit", "note": "hospital pass"}).json()
    assert (done["state"], done["verdict"], done["resolved_by"]) == ("resolved", "authorised_exit", "chen-social")
    again = client.post(f"/api/v1/alerts/{s.alert_own}/resolve", headers={"X-CSRF-Token": csrf},
                        json={"verdict": "false_alarm"})
    assert again.status_code == 409
    admin = TestClient(app)
    login(admin, "admin")
    trail = [(e["who"], e["action"]) for e in admin.get("/api/v1/audit", params={"action": "alert."}).json()["entries"]]
    assert ("chen-social", "alert.acknowledge") in trail and ("chen-social", "alert.resolve") in trail
    snap = client.get(f"/snapshots/{s.snapshot_sha}")
    assert snap.status_code == 200 and snap.content[:3] == b"\xff\xd8\xff"
    views = admin.get("/api/v1/audit", params={"action": "snapshot.view"}).json()["entries"]
    assert [v["who"] for v in views] == ["chen-social"]
