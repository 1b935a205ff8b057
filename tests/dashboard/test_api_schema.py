"""Schemathesis against the OpenAPI schema: generated requests to every operation, as an admin, find no server error.

The app runs on a seeded database with the registry API enabled (admin token) and config pushes going
to a real Mosquitto, so no operation answers 503 for want of configuration.
"""

from __future__ import annotations

import shutil
import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from dashboard.app import create_app
from dashboard.routes.registry_api import RegistryDesk
from gateway.device_config import push_device_config
from isowatch.broker import MosquittoBroker
from isowatch.clock import SystemClock
from tests.dashboard.world import login

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ADMIN_TOKEN = "schemathesis-admin-token"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if not MosquittoBroker.available():
        pytest.skip("mosquitto is not installed (scripts/test.sh installs it)")
    running = MosquittoBroker(tmp_path_factory.mktemp("broker")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(seeded_template, broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("schemathesis") / "gw"
    shutil.copytree(seeded_template.db_path.parent, root)
    db_path = root / "gw.db"
    url = broker.add_user("operator", full_access=True)
    app = create_app(db_path, snapshot_dir=root / "snapshots",
                     admin=RegistryDesk(db_path, SystemClock(), ADMIN_TOKEN),
                     push_config=lambda site, household, config: push_device_config(url, site, household, config))
    client = TestClient(app)
    csrf = login(client, "admin")
    headers = {"Cookie": f"isowatch_session={client.cookies['isowatch_session']}", "X-CSRF-Token": csrf,
               "Authorization": f"Bearer {ADMIN_TOKEN}"}
    return app, headers


def test_no_server_error_from_generated_requests(api):
    """Every operation in the schema, 20 generated cases each (hypothesis), checked for 5xx answers."""
    app, headers = api
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25
    failures: list[str] = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        started = time.monotonic()
        try:
            call()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
        print(f"{operation.method.upper()} {operation.path}: {time.monotonic() - started:.1f} s")
    assert not failures, "\n\n".join(failures)
