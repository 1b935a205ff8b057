"""The dashboard alone under uvicorn on a fixed port, to be stopped and started again (a restart the
browser sees as a dropped stream and then a server answering on the same address)."""

from __future__ import annotations

import threading
from pathlib import Path

import uvicorn

from dashboard.app import create_app
from isowatch.broker import free_port, wait_for_port


class LiveDashboard:
    def __init__(self, db_path: Path, snapshot_dir: Path) -> None:
        self.db_path, self.snapshot_dir = db_path, snapshot_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "LiveDashboard":
        app = create_app(self.db_path, snapshot_dir=self.snapshot_dir)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="dashboard", daemon=True)
        self._thread.start()
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        """Returns once the server has exited, so every stream it served is closed."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(30)
            assert not self._thread.is_alive(), "the dashboard did not stop"
            self._server = self._thread = None
