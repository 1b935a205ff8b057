"""The gateway with its dashboard served beside it: what `isowatch gateway` and the demo run.

The gateway package knows nothing of the web; this module, above both, joins them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import uvicorn

from dashboard.app import create_app
from dashboard.routes.registry_api import RegistryDesk
from gateway.device_config import push_device_config
from gateway.service import GatewayService
from isowatch.broker import BrokerUrl, free_port, wait_for_port


class SiteService(GatewayService):
    """A GatewayService that also serves the dashboard and `/api/v1` on `http_host:http_port`.

    `http_port=0` picks a free port; `http_port=None` serves no web at all (a headless gateway).
    """

    def __init__(self, db_path: Path | str, broker: BrokerUrl, *, http_host: str = "127.0.0.1",
                 http_port: int | None = 0, public_url: str | None = None, admin_token: str = "",
                 extra_routers: tuple = (), **options: Any) -> None:
        self.http_host = http_host
        self.http_port = (http_port or free_port()) if http_port is not None else None
        self.admin_token = admin_token
        self.extra_routers = extra_routers
        self._http_server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        super().__init__(db_path, broker, public_url=public_url or f"http://{http_host}:{self.http_port or 80}",
                         **options)

    def start(self) -> "SiteService":
        super().start()
        if self.http_port is not None:
            try:
                self._start_http()
            except Exception:
                super().stop()
                raise
        return self

    def _start_http(self) -> None:
        assert self.http_port is not None
        # The registry API also takes a dashboard admin's session, so it is on even without a token.
        admin = RegistryDesk(self.db_path, self.clock, self.admin_token)
        connection = self.ingest.client  # the broker names connections by user: ours is the only one we may use
        app = create_app(self.db_path, ack_desk=self.ack_desk, admin=admin, extra_routers=self.extra_routers,
                         clock=self.clock, snapshot_dir=self.store.snapshot_dir, resident_desk=self.resident_desk,
                         policy=self.policy,
                         push_config=lambda site, household, config: push_device_config(connection, site, household,
                                                                                        config))
        config = uvicorn.Config(app, host=self.http_host, port=self.http_port,
                                log_level="warning", access_log=False,
                                timeout_graceful_shutdown=3)  # open live boards (SSE) must not hold up a stop
        self._http_server = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._http_server.run, name="dashboard", daemon=True)
        self._http_thread.start()
        wait_for_port(self.http_host, self.http_port)

    def stop(self) -> None:
        if self._http_server is not None:
            self._http_server.should_exit = True
            if self._http_thread:
                self._http_thread.join(10)
        super().stop()
