"""Users: admins list and create accounts (the first admin comes from `isowatch admin create-user`)."""

from __future__ import annotations

from dashboard import accounts
from dashboard.accounts import UserCreate, UserPublic
from dashboard.deps import AdminUser, ClockDep, WriteDB, protected_router

router = protected_router(tags=["users"])
API_ERRORS = {401: {"description": "Not logged in"}, 403: {"description": "Admins only"}}


@router.get("/api/v1/users", responses=API_ERRORS)
def list_users(db: WriteDB, admin: AdminUser) -> list[UserPublic]:
    return [u.public() for u in accounts.list_users(db)]


@router.post("/api/v1/users", status_code=201, responses={**API_ERRORS, 409: {"description": "User exists"}})
def create_user(body: UserCreate, db: WriteDB, admin: AdminUser, clock: ClockDep) -> UserPublic:
    return accounts.create_user(db, body, by=admin.username, now=clock.now()).public()
