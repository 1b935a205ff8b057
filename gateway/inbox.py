"""A local stand-in for the phone services: an HTTP server on loopback that records what Apprise POSTs.

Staff in the demo, the tests and the benchmark get `json://127.0.0.1:PORT/inbox/<staff>` as their
contact URL; GET / lists the delivered messages, newest first, GET /messages.json returns them.
`delay_s` makes it a slow service (it takes the message, then answers late); `unique()` is what an
idempotent receiver keeps: one message per idempotency key (docs/alerts.md, "At least once").
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

URL = re.compile(r"https?://[^\s<>\"']+")


def _linked(text: str) -> str:
    """The message as HTML with its URLs clickable, as a chat app shows them."""
    escaped = html.escape(text, quote=False)
    return URL.sub(lambda m: f'<a href="{html.escape(m.group(0))}">{m.group(0)}</a>', escaped)


@dataclass(frozen=True)
class Delivered:
    path: str
    payload: dict[str, Any]
    arrived: float  # time.perf_counter() on arrival, for the benchmark
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The sender's idempotency key: the header, else the payload field ('' when there is none)."""
        return self.headers.get("idempotency-key") or str(self.payload.get("notification_id", ""))

    @property
    def recipient(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def title(self) -> str:
        return str(self.payload.get("title", ""))

    @property
    def body(self) -> str:
        return str(self.payload.get("message", self.payload.get("body", "")))


class LocalInbox:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, fail_paths: set[str] | None = None,
                 delay_s: float = 0.0) -> None:
        self.messages: list[Delivered] = []
        self.fail_paths = fail_paths or set()  # answer 500 here: a phone service that is down
        self.delay_s = delay_s
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path in inbox.fail_paths:
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = {"raw": raw.decode("utf-8", "replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with inbox._lock:
                    inbox.messages.append(Delivered(self.path, payload, arrived, headers))
                if inbox.delay_s:
                    time.sleep(inbox.delay_s)  # taken, answered late: the sender cannot know it arrived
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with inbox._lock:
                    items = list(reversed(inbox.messages))
                if self.path.startswith("/messages.json"):
                    body = json.dumps([{"to": m.recipient, **m.payload} for m in items], ensure_ascii=False).encode()
                    kind = "application/json"
                else:
                    rows = "".join(
                        f"<article><h3>to {html.escape(m.recipient)}: {html.escape(m.title)}</h3>"
                        f"<pre>{_linked(m.body)}</pre></article>" for m in items)
                    body = (f"<!doctype html><meta charset='utf-8'><meta name='viewport' "
                            f"content='width=device-width, initial-scale=1'><title>isowatch inbox</title>"
                            f"<h1>Delivered notifications ({len(items)})</h1>{rows}").encode()
                    kind = "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        bound_host, self.port = self.server.server_address[:2]
        assert isinstance(bound_host, str)  # an IP address: the server listens on TCP
        self.host = bound_host
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-inbox", daemon=True)

    def start(self) -> "LocalInbox":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, recipient: str) -> str:
        """The Apprise URL that delivers to this inbox for one recipient."""
        return f"json://{self.host}:{self.port}/inbox/{recipient}"

    @property
    def page(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def received(self, recipient: str | None = None) -> list[Delivered]:
        with self._lock:
            return [m for m in self.messages if recipient is None or m.recipient == recipient]

    def unique(self, recipient: str | None = None) -> list[Delivered]:
        """What an idempotent receiver keeps: the first message per idempotency key (keyless ones all count)."""
        seen: set[str] = set()
        kept = []
        for message in self.received(recipient):
            if message.key and message.key in seen:
                continue
            seen.add(message.key)
            kept.append(message)
        return kept

    def __enter__(self) -> "LocalInbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
