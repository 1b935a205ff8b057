"""Storms: which alerts page as one group, and the group's pages and escalation (the alert worker's part).

A power cut in one building, a broker restart or a site-wide network fault raises the same alert for many
households at once. A page per household would bury the team's phones, and alert fatigue is what made
real quarantine staff stop answering. So a new alert of a kind the policy lets group (`grouping.kinds`;
never a door opening, a fever, a welfare check or a household's own request, which always page at once):

- joins its team's live group of that kind when it opened within `grouping.window_s` of the group's latest
  member: listed on the group's page, not paged;
- otherwise waits (`alerts.step` 0, `next_step_at` = now + `grouping.hold_s`) and is decided on the worker's
  next pass together with every other waiting alert: when the team has `grouping.threshold` or more live,
  ungrouped alerts of the kind that opened within the window, they form a group that pages once per
  recipient and escalation step; otherwise it pages alone, as any alert does.

With the default threshold of 2 and no hold, a storm pages each recipient at most twice per step: its first
alert alone when a pass found it alone, then the group (which lists that one too). The waiting alerts, the
groups and their deadlines are in the database, so a restarted gateway carries on: a group never pages
twice for a step, and later alerts join it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from gateway import alerts, groups
from gateway.ack_links import AckLinks
from gateway.delivery import new_key, page_exists, recipients, record_page
from gateway.escalation import Page, first_page, next_page
from gateway.messages import GroupFacts, render_group
from gateway.policy import Policy
from gateway.registry import Registry
from isowatch.clock import iso, parse_iso
from isowatch.localtime import local

log = logging.getLogger(__name__)

# (alert id, kind, now): page an alert on its own, as the worker pages any alert (its first step).
PageAlone = Callable[[int, str, datetime], None]

class Grouping:
    def __init__(self, conn: sqlite3.Connection, registry: Registry, policy: Policy, links: AckLinks, public_url: str,
                 counters: dict[str, int], page_alone: PageAlone) -> None:
        self.conn = conn
        self.registry = registry
        self.policy = policy
        self.rules = policy.grouping
        self.links = links
        self.public_url = public_url.rstrip("/")
        self.counters = counters
        self.page_alone = page_alone
        counters.setdefault("grouped", 0)

    def _team(self, household: str) -> str | None:
        row = self.conn.execute("SELECT team FROM households WHERE household = ?", (household,)).fetchone()
        return row[0] if row and row[0] else None

    # -- a new alert ------------------------------------------------------------------------------

    def admit(self, alert_id: int, kind: str, household: str, now: datetime) -> bool:
        """A newly opened alert (in the caller's transaction): True when grouping takes it, joined to a live
        group or waiting to be decided; False when it pages now as any alert does."""
        if not self.rules.groups(kind):
            return False
        team = self._team(household)
        if team is None:  # no team, nobody to page as a group: it pages (and says there is nobody) alone
            return False
        group = groups.live_group(self.conn, team, kind, now, self.rules.window_s)
        if group is not None:
            groups.join(self.conn, group, alert_id, now)
            self.counters["grouped"] += 1
            return True
        self.conn.execute("UPDATE alerts SET next_step_at = ? WHERE id = ?",
                          (iso(now + timedelta(seconds=self.rules.hold_s)), alert_id))
        return True

    def release(self, now: datetime) -> None:
        """Decide the waiting alerts whose hold is over, oldest first: join, form a group, or page alone."""
        if not self.rules.kinds:
            return
        # Step 0 and due: not paged yet (a household's request waits so too, for the escalation's first step;
        # only groupable kinds are decided here, and one waiting when the policy stopped grouping its kind
        # is paged by that first step as well).
        due = self.conn.execute(
            "SELECT id, kind, household, opened_at FROM alerts WHERE next_step_at IS NOT NULL AND next_step_at <= ? "
            "AND step = 0 AND group_id IS NULL AND acknowledged_at IS NULL AND resolved_at IS NULL "
            "AND kind IN (SELECT value FROM json_each(?)) ORDER BY julianday(opened_at), id",
            (iso(now), json.dumps([k.value for k in self.rules.kinds]))).fetchall()
        if not due:
            return
        with self.conn:
            for row in due:
                still = self.conn.execute("SELECT 1 FROM alerts WHERE id = ? AND group_id IS NULL AND step = 0",
                                          (row["id"],)).fetchone()
                if still is None:  # taken into a group formed a moment ago in this loop
                    continue
                self._decide(row["id"], row["kind"], row["household"], parse_iso(row["opened_at"]), now)

    def _decide(self, alert_id: int, kind: str, household: str, opened_at: datetime, now: datetime) -> None:
        team = self._team(household)
        if team is None:  # the registry changed while it waited
            self.page_alone(alert_id, kind, now)
            return
        group = groups.live_group(self.conn, team, kind, opened_at, self.rules.window_s)
        if group is not None:
            groups.join(self.conn, group, alert_id, now)
            self.counters["grouped"] += 1
            return
        peers = [r[0] for r in self.conn.execute(
            "SELECT a.id FROM alerts a JOIN households h ON h.household = a.household WHERE a.kind = ? "
            "AND a.resolved_at IS NULL AND a.group_id IS NULL AND h.team = ? "
            "AND julianday(a.opened_at) >= julianday(?) - ? / 86400.0 ORDER BY a.id",
            (kind, team, iso(opened_at), self.rules.window_s))]
        if len(peers) < self.rules.threshold:
            self.page_alone(alert_id, kind, now)
            return
        # Alerts of the storm paged alone before it grew are members too: one list, one acknowledgement.
        group = groups.form(self.conn, team, kind, peers, now)
        self.counters["grouped"] += len(peers)
        self._page(group, first_page(self.policy.escalation(kind), now), now)

    # -- the group's escalation -------------------------------------------------------------------

    def escalate(self, now: datetime) -> None:
        """Groups whose step is due: page the next step's roles once for the whole group, or stop."""
        due = self.conn.execute(
            "SELECT id, kind, step, renotified FROM alert_groups WHERE next_step_at IS NOT NULL AND next_step_at <= ? "
            "AND acknowledged_at IS NULL AND resolved_at IS NULL ORDER BY next_step_at", (iso(now),)).fetchall()
        for row in due:
            page = next_page(self.policy.escalation(row["kind"]), self.policy.renotify, step=row["step"],
                             round=row["renotified"], now=now)
            with self.conn:
                if page is None:
                    self.conn.execute("UPDATE alert_groups SET next_step_at = NULL WHERE id = ?", (row["id"],))
                    alerts.audit(self.conn, "gateway", "alert.escalation_exhausted", f"group:{row['id']}", "", now)
                else:
                    self._page(row["id"], page, now)

    def _page(self, group_id: int, page: Page, now: datetime) -> None:
        """This step's page for the group, once per person, and the next step's deadline. In a transaction."""
        group = groups.load(self.conn, group_id)
        live = group.live
        if not live:
            self.conn.execute("UPDATE alert_groups SET resolved_at = coalesce(resolved_at, ?), next_step_at = NULL "
                              "WHERE id = ?", (iso(now), group_id))
            return
        people = recipients(self.conn, page.roles, partial(self.registry.team_slot, group.team), f"group:{group_id}",
                            now)
        for staff, (member, role_name) in people.items():
            if page_exists(self.conn, page.step, page.round, staff, group_id=group_id):
                continue
            token = self.links.issue_group(self.conn, group_id, staff, page.step)
            key = new_key()
            facts = GroupFacts(
                group_id=group_id, kind=group.kind, count=len(live), places=group.places,
                since_local=local(group.first_at, group.timezone),
                members=[f"{m.place} ({m.household})" for m in live], step=page.step, round=page.round,
                url=f"{self.public_url}/ack/group/{token}", notification_id=key)
            title, body = render_group(facts, member["language"])
            record_page(self.conn, group_id=group_id, step=page.step, round=page.round, staff=staff, role=role_name,
                        language=member["language"], title=title, body=body,
                        urls=json.loads(member["contacts"] or "[]"), key=key, now=now)
            self.counters["pages"] += 1
        self.conn.execute("UPDATE alert_groups SET step = ?, renotified = ?, next_step_at = ? WHERE id = ?",
                          (page.step, page.round, iso(page.next_at) if page.next_at else None, group_id))
