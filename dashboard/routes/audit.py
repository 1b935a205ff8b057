"""The audit log, read-only: logins, snapshot views, acknowledgements, verdicts, config changes. Admins and auditors."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from dashboard.deps import HomeZone, Overseer, ReadDB, protected_router, render, require_role
from dashboard.i18n import translator

router = protected_router(tags=["audit"], dependencies=[Depends(require_role("admin", "auditor"))])


class AuditEntry(BaseModel):
    id: int
    at: str
    who: str
    action: str
    object: str
    detail: str


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_before: int | None


def audit_page_of(db: sqlite3.Connection, who: str | None, action: str | None, before: int | None,
                  limit: int) -> AuditPage:
    where: list[str] = ["1"]
    params: list[str | int] = []
    if who:
        where.append("who = ?")
        params.append(who)
    if action:
        where.append("action LIKE ?")
        params.append(action.replace("%", "") + "%")
    if before is not None:
        where.append("id < ?")
        params.append(before)
    rows = db.execute(f"SELECT id, at, who, action, coalesce(object, '') AS object, coalesce(detail, '') AS detail "  # noqa: S608
                      f"FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                      [*params, limit + 1]).fetchall()
    entries = [AuditEntry(**dict(r)) for r in rows[:limit]]
    return AuditPage(entries=entries, next_before=entries[-1].id if len(rows) > limit else None)


class Names:
    """Readable names for the ids an audit row holds: households by address and unit, staff and users by name.

    Each id is looked up once per page (indexed, memoised); an id that no longer resolves is shown as it is."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._people: dict[str, str] = {}
        self._homes: dict[str, str | None] = {}

    def person(self, who: str) -> str:
        if who not in self._people:
            row = self.db.execute("SELECT name FROM staff WHERE staff = ? UNION ALL "
                                  "SELECT display_name FROM users WHERE username = ? LIMIT 1", (who, who)).fetchone()
            self._people[who] = row[0] if row and row[0] else who
        return self._people[who]

    def _home(self, household: str) -> str | None:
        if household not in self._homes:
            row = self.db.execute("SELECT address, unit FROM households WHERE household = ?", (household,)).fetchone()
            self._homes[household] = (" ".join(p for p in (row[0], row[1]) if p) or household) if row else None
        return self._homes[household]

    def home(self, household: str) -> str:
        return self._home(household) or household

    def thing(self, obj: str, t: Callable[..., str]) -> str:
        kind, _, key = obj.partition(":")
        if not key:
            if self._home(obj) is not None:
                return self.home(obj)
            row = self.db.execute("SELECT household FROM devices WHERE device = ?", (obj,)).fetchone()
            return f"{t('device')} {obj} · {self.home(row[0])}" if row else obj
        if kind == "household":
            return self.home(key)
        if kind == "user":
            return self.person(key)
        if kind == "snapshot":
            row = self.db.execute("SELECT household FROM snapshots WHERE sha256 = ?", (key,)).fetchone()
            return f"{t('snapshot')} · {self.home(row[0])}" if row else t("snapshot")
        if kind == "alert" and key.isdigit():
            row = self.db.execute("SELECT kind, household FROM alerts WHERE id = ?", (int(key),)).fetchone()
            return f"#{key} {t(row[0])} · {self.home(row[1])}" if row else f"#{key}"
        return obj

    def detail(self, text: str, t: Callable[..., str]) -> str:
        """"key: value" pairs instead of JSON; people and households by name, snapshot lists counted."""
        try:
            data = json.loads(text) if text.startswith("{") else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return text
        parts = []
        for key, value in sorted(data.items()):
            if key == "snapshots" and isinstance(value, list):
                parts.append(t("snapshots_seen", n=len(value)))
                continue
            if key == "household" and isinstance(value, str):
                value = self.home(value)
            elif key in ("staff", "first_by", "by") and isinstance(value, str):
                value = self.person(value)
            elif key in ("role", "verdict") and isinstance(value, str):
                value = t(value)
            elif isinstance(value, list | dict):
                value = ", ".join(map(str, value)) if isinstance(value, list) else ", ".join(
                    f"{k}={v}" for k, v in value.items())
            if value in (None, "", []):
                continue
            parts.append(f"{t(key)}: {value}")
        return "; ".join(parts)


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_html(request: Request, db: ReadDB, user: Overseer, zone: HomeZone, who: str = "", action: str = "",
               before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None) -> Response:
    result = audit_page_of(db, who or None, action or None, before, 100)
    names, t = Names(db), translator(user.language)
    rows = [{"id": e.id, "at": e.at, "action": e.action, "who": e.who, "who_name": names.person(e.who),
             "object_name": names.thing(e.object, t), "detail_text": names.detail(e.detail, t)}
            for e in result.entries]
    return render(request, "audit.html", {"page": result, "rows": rows, "who": who, "action": action, "zone": zone})


@router.get("/api/v1/audit", responses={401: {"description": "Not logged in"}, 403: {"description": "Admins and auditors only"}})
def api_audit(db: ReadDB, user: Overseer, who: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
    """Newest first; page with `before` = next_before."""
    return audit_page_of(db, who, action, before, limit)
