"""docs/alerts.md keeps up with the policy model, the alert kinds and the audit actions."""

from __future__ import annotations

import re

import pytest

from gateway.alerts import OUTCOMES
from gateway.policy import AlertKind, Delivery, Policy, Renotify, Rules, Snapshots
from tests.conftest import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "alerts.md").read_text()


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_alert_kind_is_documented(kind):
    assert f"`{kind.value}`" in DOC


SECTIONS = {"rules": Rules, "renotify": Renotify, "delivery": Delivery, "snapshots": Snapshots}


@pytest.mark.parametrize("key", [*(f"`{k}`" for k in Policy.model_fields if k not in (*SECTIONS, "kinds")),
                                 *(f"`{name}.{k}`" for name, model in SECTIONS.items() for k in model.model_fields)])
def test_every_policy_key_is_documented(key):
    assert key in DOC


def test_every_audit_action_written_by_the_gateway_is_documented():
    sources = "".join(p.read_text() for p in (REPO_ROOT / "gateway").glob("*.py"))
    actions = set(re.findall(r'"((?:device|isolation|visit|registry|alert|snapshot|retention)\.[a-z_]+)"', sources))
    assert actions, "no audit actions found"
    missing = sorted(a for a in actions if f"`{a}`" not in DOC)
    assert not missing, f"audit actions missing from docs/alerts.md: {missing}"


@pytest.mark.parametrize("kind", list(AlertKind))
def test_every_alert_kind_has_its_outcomes_and_they_are_documented(kind):
    outcomes = OUTCOMES[kind.value]
    assert f"| `{kind.value}` | {', '.join(f'`{v}`' for v in outcomes)} |" in DOC
