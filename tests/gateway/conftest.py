"""Fixtures shared by the gateway tests."""

from __future__ import annotations

import pytest

from gateway.inbox import LocalInbox


@pytest.fixture
def inbox():
    """A local HTTP receiver standing in for the staff's phones (Apprise json:// URLs point at it)."""
    with LocalInbox() as box:
        yield box
