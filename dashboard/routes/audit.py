"""The audit log, read-only: logins, snapshot views, acknowledgements, verdicts, config changes. Admins and auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from dashboard.deps import Overseer, ReadDB, protected_router, render, require_role

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


def audit_page_of(db, who: str | None, action: str | None, before: int | None, limit: int) -> AuditPage:  # type: ignore[no-untyped-def]
    where, params = ["1"], []
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


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_html(request: Request, db: ReadDB, user: Overseer, who: str = "", action: str = "",
               before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None) -> Response:
    result = audit_page_of(db, who or None, action or None, before, 100)
    return render(request, "audit.html", {"page": result, "who": who, "action": action})


@router.get("/api/v1/audit", responses={401: {"description": "Not logged in"}, 403: {"description": "Admins and auditors only"}})
def api_audit(db: ReadDB, user: Overseer, who: Annotated[str | None, Query(max_length=64)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditPage:
    """Newest first; page with `before` = next_before."""
    return audit_page_of(db, who, action, before, limit)
