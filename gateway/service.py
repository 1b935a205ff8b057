"""The gateway process assembled: store, MQTT ingest and, optionally, the dashboard over HTTP."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from gateway.ingest import Ingest
from gateway.store import Store
from isowatch.broker import BrokerUrl, free_port, wait_for_port
from isowatch.clock import Clock

log = logging.getLogger(__name__)


class GatewayService:
    def __init__(
        self,
        db_path: Path | str,
        broker: BrokerUrl,
        *,
        sites: tuple[str, ...] = ("+",),
        client_id: str = "isowatch-gateway",
        http_host: str = "127.0.0.1",
        http_port: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.store = Store(self.db_path)
        self.ingest = Ingest(self.store, broker, sites=sites, client_id=client_id, clock=clock)
        self.http_host = http_host
        self.http_port = (http_port or free_port()) if http_port is not None else None
        self._http_server = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> "GatewayService":
        self.ingest.start()
        if self.http_port is not None:
            self._start_http()
        return self

    def _start_http(self) -> None:
        import uvicorn

        from dashboard.app import create_app

        config = uvicorn.Config(create_app(self.db_path), host=self.http_host, port=self.http_port,
                                log_level="warning", access_log=False)
        self._http_server = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._http_server.run, name="dashboard", daemon=True)
        self._http_thread.start()
        wait_for_port(self.http_host, self.http_port)

    def stop(self) -> None:
        if self._http_server is not None:
            self._http_server.should_exit = True
            if self._http_thread:
                self._http_thread.join(10)
        self.ingest.stop()
        self.store.close()
