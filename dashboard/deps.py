"""Dependencies shared by the routers: the database, read-only per request."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.templating import Jinja2Templates

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def DatabasePath() -> Path:  # noqa: N802 - a dependency key, overridden by create_app
    raise RuntimeError("create_app() binds the database path")


def read_connection(path: Annotated[Path, Depends(DatabasePath)]) -> Iterator[sqlite3.Connection]:
    """A read-only connection: WAL lets readers run beside the ingest writer without blocking it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


ReadDB = Annotated[sqlite3.Connection, Depends(read_connection)]
