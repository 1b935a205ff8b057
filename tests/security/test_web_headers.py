"""Browser-side hardening: every response carries a CSP without inline scripts, refuses framing,
turns off MIME sniffing and referrers (signed links must not leak), and personal data is never cached."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from dashboard.app import create_app
from gateway.ack_links import AckDesk, AckLinks
from isowatch.clock import SystemClock
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures
from tests.dashboard.world import login

INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)


@pytest.fixture
def client(seeded):
    desk = AckDesk(seeded.db_path, AckLinks("k" * 32, SystemClock()), seeded.snapshot_dir)
    app = create_app(seeded.db_path, ack_desk=desk)
    c = TestClient(app)
    return seeded, c


def _pages(s) -> list[str]:
    return ["/", f"/alerts/{s.alert_own}", "/households", "/households/hh-3-502", "/events", "/reports", "/devices",
            "/audit"]


def _assert_hardened(response, path: str) -> None:
    h = response.headers
    csp = h.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, path
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[-1].split(";")[0], path
    assert "'unsafe-eval'" not in csp, path
    assert h.get("x-frame-options") == "DENY", path
    assert h.get("x-content-type-options") == "nosniff", path
    assert h.get("referrer-policy") == "no-referrer", path


def test_pages_and_api_answers_carry_the_security_headers_and_are_not_cached(client):
    s, c = client
    for path in ("/login", "/ack/not-a-valid-token"):
        response = c.get(path)
        _assert_hardened(response, path)
        assert "no-store" in response.headers.get("cache-control", ""), path
    login(c, "admin")
    personal = [*_pages(s), "/api/v1/households", "/api/v1/households/hh-3-502", f"/api/v1/alerts/{s.alert_own}",
                "/api/v1/events", "/api/v1/events/export.csv", "/events.csv", "/reports/response.csv",
                "/api/v1/audit", "/api/v1/me", f"/snapshots/{s.snapshot_sha}", "/api/v1/users"]
    for path in personal:
        response = c.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        _assert_hardened(response, path)
        assert "no-store" in response.headers.get("cache-control", ""), path
    assert "script-src 'self'" in c.get("/").headers["content-security-policy"]


def test_pages_hold_no_inline_script_style_or_handler_the_csp_would_block(client):
    s, c = client
    assert not INLINE.search(c.get("/login").text)
    assert not INLINE.search(c.get("/ack/not-a-valid-token").text)
    login(c, "admin")
    for path in _pages(s):
        response = c.get(path)
        if response.status_code == 200:
            found = INLINE.search(response.text)
            assert found is None, (path, found and response.text[max(0, found.start() - 80):found.end() + 80])


def test_the_api_docs_page_runs_only_scripts_from_this_server(client):
    """Swagger UI is served locally: the docs page gets the pages' CSP, no CDN, no inline script."""
    _, c = client
    response = c.get("/api/docs")
    assert response.status_code == 200
    _assert_hardened(response, "/api/docs")
    csp = response.headers["content-security-policy"]
    script_src = csp.split("script-src", 1)[1].split(";")[0].split()
    assert script_src == ["'self'"]
    assert not INLINE.search(response.text) and "http" not in response.text
    for src in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert c.get(src).status_code == 200, src
    # The bundled Swagger UI reads OpenAPI 3.0: the page gets the same operations written the 3.0 way.
    original, shown = c.get("/api/v1/openapi.json").json(), c.get("/api/docs/openapi-3.0.json").json()
    assert shown["openapi"].startswith("3.0.") and set(shown["paths"]) == set(original["paths"])
    assert '{"type": "null"}' not in json.dumps(shown)
