"""One alert vocabulary (gateway/vocabulary.py): every kind, outcome and role named in every language, the
policy, the pages, the messages and the docs on the same kinds, and every text for every kind rendered here,
so a missing key fails a test rather than a page at 3 a.m."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import get_args

import pytest
import yaml

from dashboard import accounts, ack_text, event_log, resident_text
from dashboard.i18n import translator
from gateway import alerts, policy
from gateway.messages import LABELS, AlertFacts, render
from gateway.registry import StaffIn, TeamIn
from gateway.store import open_database
from gateway.vocabulary import (
    KINDS,
    LANGUAGES,
    OUTCOME_NAMES,
    OUTCOMES,
    ROLE_NAMES,
    STAFF_ROLES,
    TODO,
    VERDICTS,
    VISIT_DECISIONS,
    AlertKind,
    Role,
    detail_text,
    kind_name,
    names,
    severity,
)
from tests.conftest import REPO_ROOT

ALL_KINDS = {kind.value for kind in AlertKind}
# One detail per kind as the rules write it (gateway/rules.py, gateway/resident.py).
DETAILS = {
    "door_opened": "contact, exit suspected", "repeated_door": "2 openings in 24 h", "fever": "37.9 °C (oral)",
    "implausible_reading": "46.0 °C (forehead)", "missed_reading": "expected by 21:00",
    "device_offline": "sensor-7 silent since 2026-11-25T20:42:00.000Z", "camera_tampered": "defocus",
    "welfare_check": "no activity since 2026-11-25T08:00:00.000Z",
    "sensor_disagree": "only the contact saw the door open",
    "help_request": "medicine", "visit_approval": "hospital visit announced for 30 min",
}


def test_every_kind_has_a_name_in_every_language_and_a_severity():
    assert set(KINDS) == ALL_KINDS
    for kind in AlertKind:
        named = [KINDS[kind][language] for language in LANGUAGES]
        assert all(isinstance(name, str) and name.strip() for name in named), kind
        assert len(set(named)) == len(LANGUAGES), f"{kind}: the same words in two languages"
        assert severity(kind) in (1, 2, 3)


def test_every_kind_has_its_outcomes_and_every_outcome_a_name():
    assert set(OUTCOMES) == ALL_KINDS
    assert all(OUTCOMES[kind] and len(set(OUTCOMES[kind])) == len(OUTCOMES[kind]) for kind in ALL_KINDS)
    assert set(OUTCOME_NAMES) == set(VERDICTS)  # every outcome named, no name for an outcome of no kind
    for verdict, named in OUTCOME_NAMES.items():
        assert set(named) == set(LANGUAGES) and all(named.values()), verdict
    assert set(VISIT_DECISIONS) == set(OUTCOMES["visit_approval"])
    assert "false_alarm" in VERDICTS  # the report's false-alarm share counts it


def test_every_role_has_a_name_a_team_slot_and_a_user_role():
    assert set(ROLE_NAMES) == set(STAFF_ROLES) == {role.value for role in Role}
    for role, named in ROLE_NAMES.items():
        assert set(named) == set(LANGUAGES) and all(named.values()), role
    assert set(get_args(accounts.Role)) == {*STAFF_ROLES, "admin", "auditor"}  # the typing copy matches
    assert set(STAFF_ROLES) <= set(TeamIn.model_fields)
    for role in STAFF_ROLES:
        assert StaffIn(staff="s-1", name="A", role=role).role == role


def test_the_database_has_a_team_slot_for_every_role(tmp_path):
    db = open_database(tmp_path / "gw.db")
    assert set(STAFF_ROLES) <= {column.name for column in db["teams"].columns}
    db.close()


def test_every_kind_says_what_to_do_in_every_language():
    assert set(TODO) == set(LANGUAGES)
    for language in LANGUAGES:
        assert set(TODO[language]) == ALL_KINDS
        assert all(steps and all(step.strip() for step in steps) for steps in TODO[language].values())


def test_the_default_policy_routes_exactly_the_vocabulary_kinds():
    raw = yaml.safe_load(policy.DEFAULT_POLICY.read_text())
    assert set(raw["kinds"]) == ALL_KINDS
    loaded = policy.load_policy()
    assert set(loaded.kinds) == ALL_KINDS
    assert {role for kind in loaded.kinds.values() for step in kind.steps for role in step.notify} <= set(Role)


def test_the_copies_are_the_vocabularys():
    assert policy.AlertKind is AlertKind and policy.Role is Role
    assert alerts.OUTCOMES is OUTCOMES and alerts.VERDICTS is VERDICTS
    assert event_log.ALERT_KINDS == tuple(kind.value for kind in AlertKind)
    assert ack_text.TODO is TODO
    assert set(get_args(event_log.VerdictName)) == set(VERDICTS)
    assert set(LABELS) == set(ack_text.PAGE) == set(resident_text.PAGE) == set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_pages_name_every_kind_outcome_and_role_as_the_vocabulary_does(language):
    board, phone, household = translator(language), ack_text.page_translator(language), \
        resident_text.page_translator(language)
    named = names(language)
    assert set(named) == ALL_KINDS | set(VERDICTS) | set(STAFF_ROLES)
    for code, name in named.items():
        assert board(code) == phone(code) == name != code  # the phone page's translator raises on a missing key
    for role in STAFF_ROLES:
        assert household(role) == ROLE_NAMES[role][language]


@pytest.mark.parametrize("language", [*LANGUAGES, "fr"])  # a language nobody wrote falls back to Chinese
@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_every_message_renders_for_every_kind_and_language(kind, language):
    assert set(DETAILS) == ALL_KINDS
    at = datetime(2026, 11, 26, 3, 4, tzinfo=timezone(timedelta(hours=8)))
    for detail, count, round_ in ((DETAILS[kind], 3, 1), ("", 1, 0)):
        facts = AlertFacts(alert_id=7, kind=kind, household="hh-1", address="1 Road", unit="2-301", at_local=at,
                           day=3, days=14, count=count, detail=detail, step=2, round=round_,
                           snapshot_url="https://gw/ack/x/snapshot", ack_url="https://gw/ack/x", notification_id="n-1")
        title, body = render(facts, language)
        assert kind_name(kind, language) in title and kind not in title
        assert not re.search(r"[{}]", title + body), body  # every placeholder filled
        if detail:
            written = detail_text(detail, language)
            assert written in body
            if language == "zh":
                assert written != detail, f"no Chinese for the {kind} detail {detail!r}"


def test_docs_list_every_kind_and_no_other():
    doc = (REPO_ROOT / "docs" / "alerts.md").read_text()
    rules = doc[doc.index("## Rules"):doc.index("### Time is the gateway's")]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", rules, re.M)) == ALL_KINDS
    outcomes = doc[doc.index("Outcomes per kind"):doc.index("## The policy file")]
    assert set(re.findall(r"^\| `([a-z_]+)` \|", outcomes, re.M)) == ALL_KINDS
