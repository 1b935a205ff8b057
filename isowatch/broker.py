"""Start an MQTT broker for the demo, tests and benchmarks: Mosquitto from our production config,
or, where Mosquitto is not installed, an in-process amqtt broker (demo only: it leaks under load).

Also writes Mosquitto's password and ACL files, so every client authenticates and a device can
publish only under its own topics.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

GATEWAY_USER = "gateway"

# Devices publish only under their own device segment (their username); the gateway reads and
# writes everything. Mosquitto substitutes %u with the client's username.
_ACL_HEADER = "# isowatch ACL: generated, do not edit by hand.\n"
_FULL_ACCESS = "user {user}\ntopic readwrite isowatch/v1/#\n"
_DEVICE_PATTERNS = """\
pattern write isowatch/v1/+/+/%u/event
pattern write isowatch/v1/+/+/%u/reading
pattern write isowatch/v1/+/+/%u/status
pattern write isowatch/v1/+/+/%u/heartbeat
pattern write isowatch/v1/+/+/%u/snapshot/+
pattern read isowatch/v1/+/+/%u/config
pattern read isowatch/v1/+/+/%u/ack
"""
DEVICE_ACL = _ACL_HEADER + _FULL_ACCESS.replace("{user}", "{gateway}") + "\n" + _DEVICE_PATTERNS


def acl_text(full_access: Iterable[str]) -> str:
    """The ACL for these gateway-like users (read and write everything) plus every device's own topics."""
    users = "".join(_FULL_ACCESS.format(user=user) for user in full_access)
    return _ACL_HEADER + users + "\n" + _DEVICE_PATTERNS


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True)
class BrokerUrl:
    """mqtt://user:password@host:port (mqtts:// for TLS)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> "BrokerUrl":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise BrokerError(f"broker URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise BrokerError(f"broker URL has no host: {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def with_user(self, username: str, password: str) -> "BrokerUrl":
        return BrokerUrl(self.host, self.port, username, password, self.tls)

    def __str__(self) -> str:
        auth = ""
        if self.username:
            auth = quote(self.username, safe="")
            if self.password:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{self.host}:{self.port}"

    def redacted(self) -> str:
        return str(BrokerUrl(self.host, self.port, self.username, "***" if self.password else None, self.tls))


def mosquitto_password_hash(password: str, salt: bytes | None = None, iterations: int = 101) -> str:
    """Mosquitto 2.x `$7$` hash (PBKDF2-SHA512), the format mosquitto_passwd writes."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """Write `user:hash` lines atomically; Mosquitto rereads the file on SIGHUP."""
    lines = [f"{name}:{mosquitto_password_hash(pw)}\n" for name, pw in sorted(users.items())]
    write_atomic(path, "".join(lines), mode=0o600)


def write_acl_file(path: Path, full_access: Iterable[str] = (GATEWAY_USER,)) -> None:
    write_atomic(path, acl_text(full_access), mode=0o600)


def write_atomic(path: Path, text: str, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def production_config_text() -> str:
    return resources.files("isowatch").joinpath("mosquitto.conf").read_text()


def local_config_text(port: int, data_dir: Path, password_file: Path, acl_file: Path) -> str:
    """The production config with the [local] lines replaced for a broker owned by this process."""
    replacements = {
        "listener": f"listener {port} 127.0.0.1",
        "password_file": f"password_file {password_file}",
        "acl_file": f"acl_file {acl_file}",
        "persistence_location": f"persistence_location {data_dir}/",
        "user": f"user {getpass.getuser()}",
        "log_dest": f"log_dest file {data_dir / 'mosquitto.log'}",
    }
    out = []
    for line in production_config_text().splitlines():
        key = line.split(" ", 1)[0]
        out.append(replacements.get(key, line) if line and not line.startswith("#") else line)
    return "\n".join(out) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerError(f"broker did not listen on {host}:{port} within {timeout:.0f} s")


class MosquittoBroker:
    """A Mosquitto process on a free loopback port, with its own password file, ACL and data dir."""

    def __init__(self, data_dir: Path, port: int | None = None, binary: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.binary = binary or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.password_file = self.data_dir / "passwd"
        self.acl_file = self.data_dir / "acl"
        self.config_file = self.data_dir / "mosquitto.conf"
        self.users: dict[str, str] = {GATEWAY_USER: secrets.token_urlsafe(16)}
        self.full_access: list[str] = [GATEWAY_USER]
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())

    def url(self, username: str = GATEWAY_USER) -> BrokerUrl:
        return BrokerUrl("127.0.0.1", self.port, username, self.users[username])

    def add_user(self, username: str, password: str | None = None, *, full_access: bool = False) -> BrokerUrl:
        """Give a client credentials; reloads a running broker.

        A device's username is its device id. `full_access` users read and write every topic as the
        gateway does: another gateway shard, an operator pushing configs, a test's own subscriber or a load
        generator. The broker uses the username as client id, so each process that connects needs its own.
        """
        self.users[username] = password or secrets.token_urlsafe(16)
        write_password_file(self.password_file, self.users)
        if full_access and username not in self.full_access:
            self.full_access.append(username)
            write_acl_file(self.acl_file, self.full_access)
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)
            time.sleep(0.05)  # Mosquitto rereads the files asynchronously
        return self.url(username)

    def start(self) -> "MosquittoBroker":
        write_password_file(self.password_file, self.users)
        write_acl_file(self.acl_file, self.full_access)
        self.config_file.write_text(local_config_text(self.port, self.data_dir, self.password_file, self.acl_file))
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port("127.0.0.1", self.port)
        except BrokerError:
            self.stop()
            raise BrokerError(f"mosquitto failed to start; see {self.data_dir / 'mosquitto.log'}") from None
        log.info("mosquitto started port=%d pid=%d", self.port, self.process.pid)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: Mosquitto saves its persistence file on SIGTERM."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Crash: SIGKILL, nothing saved since the last autosave."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def wipe(self) -> None:
        """Forget everything persisted, as a broker restarted on an empty disk would."""
        for path in self.data_dir.glob("*.db"):
            path.unlink()

    def __enter__(self) -> "MosquittoBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AmqttBroker:
    """amqtt in a background thread with its own event loop, for machines without Mosquitto.

    It binds to loopback only and accepts any client (clients still send their credentials):
    no password file, no ACL. The demo only; production runs Mosquitto.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.users: dict[str, str] = {GATEWAY_USER: secrets.token_urlsafe(16)}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None  # an amqtt Broker (amqtt has no type hints)

    def url(self, username: str = GATEWAY_USER) -> BrokerUrl:
        return BrokerUrl("127.0.0.1", self.port, username, self.users[username])

    def add_user(self, username: str, password: str | None = None, *, full_access: bool = False) -> BrokerUrl:
        self.users[username] = password or secrets.token_urlsafe(16)  # amqtt checks no ACL: all access
        return self.url(username)

    def start(self) -> "AmqttBroker":
        import asyncio

        from amqtt.broker import Broker

        ready = threading.Event()
        errors: list[BaseException] = []
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise BrokerError(f"amqtt broker failed to start: {errors[0]}")
        return self

    def stop(self) -> None:
        import asyncio

        if self._loop and self._broker:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(10)
            except Exception as exc:  # shutting down anyway
                log.warning("amqtt shutdown: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> "AmqttBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_embedded_broker(data_dir: Path, prefer: str = "auto") -> MosquittoBroker | AmqttBroker:
    """Mosquitto when installed (or asked for), else amqtt."""
    if prefer == "mosquitto" or (prefer == "auto" and MosquittoBroker.available()):
        return MosquittoBroker(data_dir / "mosquitto").start()
    return AmqttBroker(data_dir / "amqtt").start()
