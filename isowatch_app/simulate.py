"""A simulated fleet of households on the wire: heartbeats, readings, door events, devices going offline.

Fifty thousand households cannot be fifty thousand paho clients in one Python process, and paho spends
~190 us of Python per QoS 1 publish, which would make the load generator, not the gateway, the bottleneck
of a benchmark on a small machine. So a few `WirePublisher` connections (a minimal MQTT 3.1.1 QoS 1
publisher on a plain socket) publish under every simulated device's topics. Each device still has its own
id, sequence counter and UUIDv7 message ids, and every payload is one the contract accepts (tests decode
them). The connection needs a bench/test-only credential that may write device topics (see
docs/deployment.md), never the gateway's own: the broker names a connection by its user, so connecting as
the gateway would take over (and, with a clean session, wipe) the gateway's session. Never give such a
credential to anything in production.

Used by the benchmarks (bench/ingest.py, bench/steady_load.py) and `isowatch simulate`.
"""

from __future__ import annotations

import heapq
import json
import random
import select
import socket
import sqlite3
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click

from isowatch import mqtt_wire
from isowatch.broker import BrokerError, BrokerUrl
from isowatch.contract import TOPIC_ROOT
from isowatch.ids import uuid7


class SimulationError(RuntimeError):
    pass


# -- the fleet: ids, counters and payloads --------------------------------------------------------------


def _now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Fleet:
    """`households` households spread over `sites` sites, one device each (`dev-000042` in `hh-000042`)."""

    households: int
    sites: int = 1
    prefix: str = ""  # keeps fleets of several runs on one broker apart
    _seq: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.households < 1 or self.sites < 1:
            raise SimulationError("a fleet needs at least one household and one site")
        self._seq = [0] * self.households

    def site(self, n: int) -> str:
        return f"{self.prefix}site-{n % self.sites}"

    def household(self, n: int) -> str:
        return f"{self.prefix}hh-{n:06d}"

    def device(self, n: int) -> str:
        return f"{self.prefix}dev-{n:06d}"

    def topic(self, n: int, kind: str) -> bytes:
        return f"{TOPIC_ROOT}/{self.site(n)}/{self.household(n)}/{self.device(n)}/{kind}".encode()

    def _envelope(self, n: int, *, numbered: bool = True) -> str:
        # Field for field what edge/uplink.py's Stamper and contract.encode produce; f-strings because
        # building a pydantic model per message would cost the generator more than the gateway spends.
        if numbered:
            self._seq[n] += 1
        seq = self._seq[n] if numbered else 0  # status is retained state, outside the numbered stream
        return (f'{{"schema_version":1,"id":"{uuid7()}","device":"{self.device(n)}","seq":{seq},'
                f'"device_time":"{_now_text()}"')

    def door(self, n: int, state: str = "open") -> tuple[bytes, bytes]:
        body = (f',"type":"door","state":"{state}","source":"camera","opening_id":null,"duration_s":null,'
                '"exit_suspected":false,"snapshots":[]}')
        return self.topic(n, "event"), (self._envelope(n) + body).encode()

    def temperature(self, n: int, celsius: float = 36.6) -> tuple[bytes, bytes]:
        body = (f',"type":"temperature","celsius":{celsius},"subject":"body","method":"axillary",'
                '"plausible":true,"sensor":null,"battery_pct":null}')
        return self.topic(n, "reading"), (self._envelope(n) + body).encode()

    def heartbeat(self, n: int, uptime_s: float) -> tuple[bytes, bytes]:
        body = (f',"type":"heartbeat","uptime_s":{uptime_s:.1f},"outbox_depth":0,"outbox_dropped":0,'
                '"config_version":null,"fps":5.0,"cpu_temp_c":48.5}')
        return self.topic(n, "heartbeat"), (self._envelope(n) + body).encode()

    def status(self, n: int, state: str) -> tuple[bytes, bytes]:
        body = (f',"type":"status","state":"{state}","firmware":"sim","config_version":null,'
                '"config_error":null,"camera":"ok"}')
        return self.topic(n, "status"), (self._envelope(n, numbered=False) + body).encode()


def register_fleet(db_path: Path | str, fleet: Fleet, *, isolated: bool = True, teams: int = 8,
                   contacts: tuple[str, ...] = ("json://127.0.0.1:9/",)) -> None:
    """Put the fleet's households, teams, isolation periods and devices in a (migrated) gateway database.

    Through the registry's bulk path (one Registry call per household, each with its own transaction
    and audit row, takes minutes for 50,000). Staff contacts default to a dead address; a benchmark
    that measures paging gives its own `contacts` (team t uses contacts[t % len]). Each isolated
    household also gets the body temperature that was due at the last reading time, as a fleet that has
    been running would have: otherwise the missed-reading scan pages every household at once.
    """
    from gateway.policy import load_policy  # the gateway's extra, not needed to publish
    from gateway.registry import HouseholdIn, Registry, StaffIn, TeamIn
    from gateway.rules import reading_deadline
    from gateway.store import Accepted, Store
    from gateway.vocabulary import STAFF_ROLES
    from isowatch.contract import TemperatureReading, Topic, TopicKind
    from isowatch.localtime import DEFAULT_ZONE

    store = Store(db_path)  # migrates a new database
    conn = sqlite3.connect(str(db_path), timeout=30)
    registry = Registry(conn)
    for t in range(teams):
        members = {}
        for role in STAFF_ROLES:
            ident = f"{fleet.prefix}{role}-{t}"
            registry.upsert_staff(StaffIn(staff=ident, name=ident, role=role, language="en",
                                          contacts=[contacts[t % len(contacts)]]))
            members[role] = ident
        registry.upsert_team(TeamIn(team=f"{fleet.prefix}team-{t}", **members))
    n_all = range(fleet.households)
    households = [HouseholdIn(household=fleet.household(n), site=fleet.site(n), language="en",
                              team=f"{fleet.prefix}team-{n % teams}") for n in n_all]
    registry.add_fleet(households, by="simulate",
                       isolation_start=(date.today() - timedelta(days=2)) if isolated else None)
    if isolated:
        rules = load_policy(None).rules
        slot = reading_deadline(datetime.now(timezone.utc), rules.readings_expected_at,
                                rules.reading_grace_minutes, DEFAULT_ZONE)
        if slot is not None:
            taken = slot[1]
            readings = []
            for n in n_all:
                reading = TemperatureReading(id=uuid7(), device=fleet.device(n), seq=0, device_time=taken,
                                             type="temperature", celsius=36.6, subject="body", method="axillary")
                topic = Topic(site=fleet.site(n), household=fleet.household(n), device=fleet.device(n),
                              kind=TopicKind.READING)
                readings.append(Accepted(topic, reading, taken, reading.model_dump_json().encode()))
            for start in range(0, len(readings), 5000):
                store.write_batch(readings[start:start + 5000])
    store.close()
    # Registered after their readings are stored: a device is then as a new fleet's, not yet heard from
    # (the offline scan counts from registration), rather than silent since its last reading hours ago.
    registry.add_fleet([], by="simulate", devices={fleet.device(n): fleet.household(n) for n in n_all})
    conn.close()


# -- the wire ---------------------------------------------------------------------------------------


class WirePublisher:
    """One MQTT 3.1.1 connection that only publishes at QoS 1, with up to `window` messages unacknowledged.

    Publishes are buffered and written in large chunks; PUBACKs (the only thing the broker sends to a
    client that subscribes to nothing) are counted in bulk. Load generation only: no reconnect, no resend.
    """

    def __init__(self, broker: BrokerUrl, client_id: str, *, window: int = 2000) -> None:
        self.window = window
        self.sent = 0
        self.acked = 0
        self._buffer = bytearray()
        self._inbound = b""
        self._mid = 0
        sock = socket.create_connection((broker.host, broker.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if broker.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=broker.host)
        self._sock = sock
        flags = 0x02  # clean session: a load generator keeps no state
        payload = mqtt_wire.encode_string(client_id)
        if broker.username:
            flags |= 0x80
            payload += mqtt_wire.encode_string(broker.username)
            if broker.password:
                flags |= 0x40
                payload += mqtt_wire.encode_string(broker.password)
        # Protocol name, level 4 (3.1.1), flags, keepalive 0: no pings needed.
        variable = mqtt_wire.encode_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 0)
        sock.sendall(mqtt_wire.packet(mqtt_wire.CONNECT, variable + payload))
        connack = self._read_exact(4)
        if connack[0] != mqtt_wire.CONNACK or connack[3] != 0:
            raise SimulationError(f"broker refused the simulator's connection (CONNACK code {connack[3]})")
        sock.setblocking(False)

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise SimulationError("broker closed the simulator's connection")
            data += chunk
        return data

    def publish(self, topic: bytes, payload: bytes) -> None:
        self._mid = self._mid % 65535 + 1
        self._buffer += mqtt_wire.publish(topic, payload, qos=1, packet_id=self._mid)
        self.sent += 1
        if len(self._buffer) >= 65536 or self.sent - self.acked >= self.window:
            self.flush(wait=False)

    def flush(self, *, wait: bool = False, timeout: float = 30.0) -> None:
        """Write what is buffered; keep the window; with `wait`, until every publish is acknowledged."""
        deadline = time.monotonic() + timeout
        while self._buffer or self.sent - self.acked >= self.window or (wait and self.acked < self.sent):
            if time.monotonic() > deadline:
                raise SimulationError(f"broker acknowledged {self.acked} of {self.sent} publishes in {timeout:.0f} s")
            want_write = [self._sock] if self._buffer else []
            readable, writable, _ = select.select([self._sock], want_write, [], 1.0)
            if readable:
                self._read_acks()
            if writable and self._buffer:
                try:
                    written = self._sock.send(self._buffer)
                except (BlockingIOError, ssl.SSLWantWriteError):
                    continue
                del self._buffer[:written]

    def _read_acks(self) -> None:
        try:
            data = self._sock.recv(262144)
        except (BlockingIOError, ssl.SSLWantReadError):
            return
        if not data:
            raise SimulationError("broker closed the simulator's connection")
        data = self._inbound + data
        whole = len(data) // 4 * 4  # PUBACK: 0x40 0x02 mid mid
        self.acked += whole // 4
        self._inbound = data[whole:]

    def close(self) -> None:
        try:
            self.flush(wait=True, timeout=10)
            self._sock.setblocking(True)
            self._sock.sendall(b"\xe0\x00")
        except (OSError, SimulationError):
            pass  # closing anyway
        self._sock.close()


# -- behaviour --------------------------------------------------------------------------------------


def flood(broker: BrokerUrl, fleet: Fleet, count: int, *, readings_share: float = 0.5,
          client_id: str = "isowatch-sim-flood") -> float:
    """Publish `count` door events and temperature readings as fast as the broker takes them, round-robin
    over the fleet's devices; returns the seconds until the broker acknowledged the last one."""
    publisher = WirePublisher(broker, client_id)
    every = max(1, round(1 / readings_share)) if readings_share > 0 else 0
    started = time.perf_counter()
    for i in range(count):
        n = i % fleet.households
        topic, payload = fleet.temperature(n) if every and i % every == 0 else fleet.door(n)
        publisher.publish(topic, payload)
    publisher.close()
    return time.perf_counter() - started


@dataclass
class Profile:
    """How a simulated household behaves; defaults from DESIGN.md (heartbeat 30 s, readings twice a day)."""

    heartbeat_s: float = 30.0
    readings_per_day: float = 2.0
    door_rate: float = 1.0  # door events per second across the fleet, on average
    door_burst: int = 20  # ... arriving in bursts of this many (a delivery round, a fire drill)
    offline_share: float = 0.01  # share of devices that drop off for a while
    offline_s: float = 120.0
    fever_share: float = 0.0  # share of readings at 38.5 C (each pages someone)


@dataclass
class SimStats:
    heartbeats: int = 0
    readings: int = 0
    doors: int = 0
    status: int = 0

    @property
    def total(self) -> int:
        return self.heartbeats + self.readings + self.doors + self.status


def run_fleet(broker: BrokerUrl, fleet: Fleet, profile: Profile, duration_s: float, *,
              stop: threading.Event | None = None, client_id: str = "isowatch-sim", seed: int = 1,
              exclude_doors: frozenset[int] = frozenset()) -> SimStats:
    """Drive the fleet in real time for `duration_s` (or until `stop`). Heartbeats are spread evenly over
    the period (devices booted at random times); readings and door bursts arrive as Poisson processes;
    an offline device sends its Last Will (status offline), stays silent, then comes back online."""
    rng = random.Random(seed)
    stop = stop or threading.Event()
    publisher = WirePublisher(broker, client_id)
    stats = SimStats()
    started = time.monotonic()
    # (next heartbeat, device) in a heap: one clock for every device instead of 50,000 timers.
    due: list[tuple[float, int]] = [(started + rng.uniform(0, profile.heartbeat_s), n) for n in range(fleet.households)]
    offline_until: dict[int, float] = {}  # device -> when it comes back (its Last Will was sent)
    heapq.heapify(due)
    readings_rate = fleet.households * profile.readings_per_day / 86400
    next_reading = started + rng.expovariate(readings_rate) if readings_rate else float("inf")
    burst_rate = profile.door_rate / profile.door_burst if profile.door_rate else 0
    next_burst = started + rng.expovariate(burst_rate) if burst_rate else float("inf")
    offline_rate = fleet.households * profile.offline_share / max(duration_s, 1)
    next_offline = started + rng.expovariate(offline_rate) if offline_rate else float("inf")
    door_pool = [n for n in range(fleet.households) if n not in exclude_doors]
    try:
        while not stop.is_set():
            now = time.monotonic()
            if now - started >= duration_s:
                break
            while due and due[0][0] <= now:
                when, n = heapq.heappop(due)
                heapq.heappush(due, (when + profile.heartbeat_s, n))
                if n in offline_until:
                    if now < offline_until[n]:
                        continue  # silent while offline
                    del offline_until[n]
                    publisher.publish(*fleet.status(n, "online"))
                    stats.status += 1
                uptime = now - started + n % 86400  # devices booted at different times
                publisher.publish(*fleet.heartbeat(n, uptime))
                stats.heartbeats += 1
            while next_reading <= now:
                fever = rng.random() < profile.fever_share
                publisher.publish(*fleet.temperature(rng.randrange(fleet.households), 38.5 if fever else 36.6))
                stats.readings += 1
                next_reading += rng.expovariate(readings_rate)
            while next_burst <= now and door_pool:
                for n in rng.sample(door_pool, min(profile.door_burst, len(door_pool))):
                    publisher.publish(*fleet.door(n))
                    stats.doors += 1
                next_burst += rng.expovariate(burst_rate)
            while next_offline <= now:
                n = rng.randrange(fleet.households)
                offline_until[n] = now + profile.offline_s
                publisher.publish(*fleet.status(n, "offline"))
                stats.status += 1
                next_offline += rng.expovariate(offline_rate)
            publisher.flush()
            wake = min(due[0][0], next_reading, next_burst, next_offline, now + 0.05)
            stop.wait(max(0.0, wake - time.monotonic()))
    finally:
        publisher.close()
    return stats


# -- the command ------------------------------------------------------------------------------------


@click.command()
@click.option("--broker", "broker_url", required=True, envvar="ISOWATCH_BROKER",
              help="mqtt://user:password@host:port; a test/bench credential allowed to write device topics, "
                   "never the gateway's (it would take over the gateway's session).")
@click.option("--households", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--sites", type=click.IntRange(1), default=1, show_default=True, help="Spread households over sites.")
@click.option("--rate", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Door events per second across the fleet, in bursts.")
@click.option("--burst", type=click.IntRange(1), default=20, show_default=True, help="Door events per burst.")
@click.option("--heartbeat", "heartbeat_s", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Seconds between a device's heartbeats.")
@click.option("--readings-per-day", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--offline-share", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Share of devices that go offline (status offline, silence, back online) during the run.")
@click.option("--for", "duration_s", type=click.FloatRange(1), default=60.0, show_default=True, help="Seconds to run.")
@click.option("--register", "register_db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="First put the fleet's households, teams, isolation periods and devices in this gateway database.")
def simulate(broker_url: str, households: int, sites: int, rate: float, burst: int, heartbeat_s: float,
             readings_per_day: float, offline_share: float, duration_s: float, register_db: Path | None) -> None:
    """Drive a broker with a simulated fleet: heartbeats, readings, door-event bursts, devices going offline.

    Prints a JSON summary of what was published. For benchmarks and for trying a deployment; the
    credential it uses may write any device's topics, so never give it to anything in production.
    """
    try:
        broker = BrokerUrl.parse(broker_url)
    except BrokerError as exc:
        raise click.BadParameter(str(exc), param_hint="--broker") from None
    fleet = Fleet(households, sites)
    if register_db is not None:
        register_fleet(register_db, fleet)
    profile = Profile(heartbeat_s=heartbeat_s, readings_per_day=readings_per_day, door_rate=rate, door_burst=burst,
                      offline_share=offline_share)
    try:
        stats = run_fleet(broker, fleet, profile, duration_s)
    except (OSError, SimulationError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"households": households, "seconds": duration_s, "heartbeats": stats.heartbeats,
                           "readings": stats.readings, "door_events": stats.doors, "status": stats.status}))
