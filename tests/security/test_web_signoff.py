"""Early-end sign-off: one person could give both signatures, a team could put the same person in
the leader and medical slots, and no slot was checked against the staff member's role. Now leader and medical
are two different people whose roles match their slots, and an early end needs both."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.registry import Registry, RegistryError, StaffIn, TeamIn
from tests.dashboard.conftest import seeded, seeded_template  # noqa: F401 - fixtures


@pytest.fixture
def registry(seeded):
    conn = sqlite3.connect(seeded.db_path)
    yield Registry(conn)
    conn.close()


TEAM = {"team": "team-1", "leader": "wang-leader", "medical": "li-medical", "police": "zhao-police",
        "social": "chen-social"}


def test_one_person_cannot_hold_the_leader_and_medical_slots(registry):
    with pytest.raises(ValueError, match="different people"):
        TeamIn(**{**TEAM, "leader": "li-medical"})


@pytest.mark.parametrize("slot, person", [("leader", "chen-social"), ("medical", "zhao-police"),
                                          ("police", "li-medical"), ("social", "zhao-police")])
def test_every_slot_holds_a_staff_member_of_its_role(registry, slot, person):
    with pytest.raises(RegistryError, match=f"cannot hold the {slot} slot"):
        registry.upsert_team(TeamIn(**{**TEAM, slot: person}))


def test_a_staff_member_in_a_slot_cannot_change_role_under_it(registry):
    with pytest.raises(RegistryError, match="holds a team's medical slot"):
        registry.upsert_staff(StaffIn(staff="li-medical", name="Li Na", role="leader"))


def test_one_person_cannot_sign_twice_and_the_end_needs_both(registry):
    period = registry.isolations("hh-3-502")[0]
    assert registry.sign_end(period.id, staff="li-medical", reason="negative tests").ended_at is None
    with pytest.raises(RegistryError, match="already signed"):
        registry.sign_end(period.id, staff="li-medical", reason="negative tests")
    assert registry.isolation(period.id).ended_at is None
    assert registry.sign_end(period.id, staff="wang-leader", reason="negative tests").ended_at is not None


def test_a_team_saved_before_the_checks_cannot_end_early_on_one_signature(registry):
    """The old way in: a medical worker written into both slots (as the unchecked upsert_team allowed)."""
    with registry.conn:
        registry.conn.execute("UPDATE teams SET leader = 'li-medical' WHERE team = 'team-1'")
    period = registry.isolations("hh-3-502")[0]
    assert registry.sign_end(period.id, staff="li-medical").ended_at is None
    with pytest.raises(RegistryError):
        registry.sign_end(period.id, staff="li-medical")
    assert registry.isolation(period.id).ended_at is None
