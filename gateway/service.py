"""The gateway process assembled: store, MQTT ingest and, optionally, the dashboard over HTTP."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from pathlib import Path

from gateway.ack_links import AckDesk, AckLinks, load_or_create_secret
from gateway.alert_process import AlertProcess
from gateway.ingest import Ingest
from gateway.integrity import Maintenance, check_at_start, disk_full, is_disk_full
from gateway.policy import Policy, load_policy
from gateway.resident import ResidentDesk, ResidentLinks
from gateway.rules import may_page_now
from gateway.store import Store
from isowatch.broker import BrokerUrl, free_port, wait_for_port
from isowatch.clock import Clock, SystemClock

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
        policy: Policy | Path | str | None = None,
        public_url: str | None = None,
        secret: str | None = None,
        alerts: bool = True,
        admin_token: str = "",
        extra_routers: tuple = (),
        worker_options: dict | None = None,
        backup_dir: Path | None = None,
        backup_every_s: float = 6 * 3600,
        backup_keep: int = 7,
        integrity_check_every_s: float = 24 * 3600,
    ) -> None:
        self.db_path = Path(db_path)
        self.clock = clock or SystemClock()
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        check_at_start(self.db_path)  # raises DatabaseDamaged / DiskFull with what to do
        try:
            self.store = Store(self.db_path, snapshot_quota_bytes=int(self.policy.snapshots.quota_mib_per_hour * 2**20))
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc, self.db_path):
                raise disk_full(self.db_path) from None
            raise
        self.maintenance = Maintenance(self.db_path, backup_dir, backup_every_s=backup_every_s, keep=backup_keep,
                                       check_every_s=integrity_check_every_s)
        self.http_host = http_host
        self.http_port = (http_port or free_port()) if http_port is not None else None
        # Issue 6: rules, escalation and notifications run in their own worker; ingest only wakes it.
        # Issue 8: in a process of its own, so it neither slows ingest nor waits for it.
        # The store process decides whether a batch may page at once, so ingest wakes the worker only then.
        self.ingest = Ingest(self.store, broker, sites=sites, client_id=client_id, clock=self.clock,
                             urgent=functools.partial(may_page_now, policy=self.policy) if alerts else None)
        self.public_url = (public_url or f"http://{http_host}:{self.http_port or 80}").rstrip("/")
        secret = secret or load_or_create_secret(self.db_path.with_name(self.db_path.name + ".secret"))
        self.ack_links = AckLinks(secret, self.clock, ttl_hours=self.policy.ack_link_ttl_hours)
        self.ack_desk = AckDesk(self.db_path, self.ack_links, self.store.snapshot_dir)
        self.resident_desk = ResidentDesk(self.db_path, ResidentLinks(secret, self.clock, self.policy), self.public_url)
        self.admin_token = admin_token
        self.extra_routers = extra_routers
        self.alerts: AlertProcess | None = None
        if alerts:
            if not isinstance(self.clock, SystemClock):
                raise ValueError("the alert process runs on the system clock; with an injected clock, "
                                 "drive gateway.alert_worker.AlertWorker directly")
            self.alerts = AlertProcess(self.db_path, self.policy, secret, self.public_url,
                                       snapshot_dir=self.store.snapshot_dir, worker_options=worker_options)
            self.ingest.listeners.append(self.alerts.on_batch)
        self._http_server = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> "GatewayService":
        if self.alerts is not None:
            self.alerts.start()  # first: it resumes pending escalations and deliveries from the database
        try:
            self.ingest.start()
        except Exception:
            if self.alerts is not None:
                self.alerts.stop()
            raise
        if self.http_port is not None:
            self._start_http()
        self.maintenance.start()
        return self

    def _start_http(self) -> None:
        import uvicorn

        from dashboard.app import create_app

        from dashboard.routes.registry_api import RegistryDesk

        # Issue 7: the registry API also takes a dashboard admin's session, so it is on even without a token.
        admin = RegistryDesk(self.db_path, self.clock, self.admin_token)
        from gateway.device_config import push_device_config

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
        self.maintenance.stop()
        if self._http_server is not None:
            self._http_server.should_exit = True
            if self._http_thread:
                self._http_thread.join(10)
        self.ingest.stop()
        if self.alerts is not None:
            self.alerts.stop()
        self.store.close()
