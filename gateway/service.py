"""The gateway process assembled: store, MQTT ingest and, optionally, the dashboard over HTTP."""

from __future__ import annotations

import functools
import logging
import sqlite3
from pathlib import Path

from gateway.ack_links import AckDesk, AckLinks, load_or_create_secret
from gateway.alert_process import AlertProcess
from gateway.ingest import Ingest
from gateway.integrity import Maintenance, check_at_start, disk_full, is_disk_full
from gateway.policy import Policy, load_policy
from gateway.resident import ResidentDesk, ResidentLinks
from gateway.rules import may_page_now
from gateway.store import Store
from isowatch.broker import BrokerUrl
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
        clock: Clock | None = None,
        policy: Policy | Path | str | None = None,
        public_url: str | None = None,
        secret: str | None = None,
        alerts: bool = True,
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
        # Rules, escalation and notifications run in their own worker, in a process of its own, so it neither
        # slows ingest nor waits for it; ingest only wakes it.
        # The store process decides whether a batch may page at once, so ingest wakes the worker only then.
        self.ingest = Ingest(self.store, broker, sites=sites, client_id=client_id, clock=self.clock,
                             urgent=functools.partial(may_page_now, policy=self.policy) if alerts else None)
        self.public_url = (public_url or "http://127.0.0.1:80").rstrip("/")
        secret = secret or load_or_create_secret(self.db_path.with_name(self.db_path.name + ".secret"))
        self.ack_links = AckLinks(secret, self.clock, ttl_hours=self.policy.ack_link_ttl_hours)
        self.ack_desk = AckDesk(self.db_path, self.ack_links, self.store.snapshot_dir)
        self.resident_desk = ResidentDesk(self.db_path, ResidentLinks(secret, self.clock, self.policy), self.public_url)
        self.alerts: AlertProcess | None = None
        if alerts:
            if not isinstance(self.clock, SystemClock):
                raise ValueError("the alert process runs on the system clock; with an injected clock, "
                                 "drive gateway.alert_worker.AlertWorker directly")
            self.alerts = AlertProcess(self.db_path, self.policy, secret, self.public_url,
                                       snapshot_dir=self.store.snapshot_dir, worker_options=worker_options)
            self.ingest.listeners.append(self.alerts.on_batch)

    def start(self) -> "GatewayService":
        if self.alerts is not None:
            self.alerts.start()  # first: it resumes pending escalations and deliveries from the database
        try:
            self.ingest.start()
        except Exception:
            if self.alerts is not None:
                self.alerts.stop()
            raise
        self.maintenance.start()
        return self

    def stop(self) -> None:
        self.maintenance.stop()
        self.ingest.stop()
        if self.alerts is not None:
            self.alerts.stop()
        self.store.close()
