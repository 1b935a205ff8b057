"""Login guessing: the attempt is counted before the password is checked, atomically across
threads and processes, and the limit slows one address down without locking the real user out.

Two real uvicorn processes serve one database; 40 guesses arrive at once, split between them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from dashboard.accounts import MAX_FAILURES_PER_USER
from tests.conftest import REPO_ROOT
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures
from tests.dashboard.world import PASSWORD
from tests.support import query, wait_until

SERVE = "import sys, uvicorn; from dashboard.app import create_app; " \
        "uvicorn.run(create_app(sys.argv[1]), host='127.0.0.1', port=int(sys.argv[2]), log_level='warning')"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def two_servers(seeded):
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    servers, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            servers.append(subprocess.Popen([sys.executable, "-c", SERVE, str(seeded.db_path), str(port)],
                                            env=env, cwd=REPO_ROOT))
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_until(lambda: _up(url), timeout=60, what=f"uvicorn at {url}")
        yield seeded.db_path, urls
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def _checked(db_path: Path, username: str) -> int:
    """Passwords actually verified: every verification ends in auth.login or auth.login_failed."""
    return query(db_path, "SELECT count(*) FROM audit_log WHERE who = ? AND action IN ('auth.login', "
                          "'auth.login_failed')", (username,))[0][0]


def test_forty_parallel_guesses_check_at_most_the_limit_and_the_real_user_still_logs_in(two_servers):
    db_path, urls = two_servers
    guesses = [f"wrong-guess-{i}" for i in range(39)] + [PASSWORD]

    def guess(i: int) -> int:
        with httpx.Client(base_url=urls[i % 2], timeout=120) as client:
            return client.post("/api/v1/session", json={"username": "chen", "password": guesses[i]}).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        codes = list(pool.map(guess, range(40)))
    assert _checked(db_path, "chen") <= MAX_FAILURES_PER_USER, codes
    assert codes.count(401) + codes.count(200) <= MAX_FAILURES_PER_USER
    assert set(codes) <= {200, 401, 429}
    # The guessing address is slowed down; the real user on another address logs in at once.
    with httpx.Client(base_url=urls[0], timeout=60,
                      transport=httpx.HTTPTransport(local_address="127.0.0.2")) as phone:
        answer = phone.post("/api/v1/session", json={"username": "chen", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
    with httpx.Client(base_url=urls[1], timeout=60) as attacker:
        again = attacker.post("/api/v1/session", json={"username": "chen", "password": PASSWORD})
        assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1


def test_the_limit_is_a_doubling_delay_per_address_not_a_lockout(seeded):
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from isowatch.clock import ManualClock

    clock = ManualClock()
    client = TestClient(create_app(seeded.db_path, clock=clock))

    def attempt(password: str = "wrong-guess") -> httpx.Response:
        return client.post("/api/v1/session", json={"username": "li", "password": password})

    assert [attempt().status_code for _ in range(MAX_FAILURES_PER_USER)] == [401] * MAX_FAILURES_PER_USER
    waits = []
    for _ in range(3):  # each further guess waits twice as long
        refused = attempt(PASSWORD)
        assert refused.status_code == 429  # even the right password is not checked while waiting
        waits.append(int(refused.headers["retry-after"]))
        clock.advance(waits[-1])
        assert attempt().status_code == 401  # one more guess once the wait is over
    assert waits == [60, 120, 240]
    clock.advance(480)  # the real user, back after the wait, is let in
    assert attempt(PASSWORD).status_code == 200
    assert _checked(seeded.db_path, "li") == MAX_FAILURES_PER_USER + 4
