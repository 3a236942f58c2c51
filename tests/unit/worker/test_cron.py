"""Cron slots in time zones, and the missed-slot policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db.states import MissedPolicy
from worker.cron import check_cron, due_slots, next_slot
from worker.errors import DefinitionError


def test_next_slot_is_computed_in_the_schedule_time_zone() -> None:
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert next_slot("0 9 * * *", "Europe/Paris", winter) == datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    assert next_slot("0 9 * * *", "Europe/Paris", summer) == datetime(2026, 7, 16, 7, 0, tzinfo=UTC)


def test_seconds_field() -> None:
    t = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert next_slot("* * * * * */10", "UTC", t) == t + timedelta(seconds=10)


def test_nothing_due_before_the_slot() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert due_slots("* * * * *", "UTC", t + timedelta(minutes=1), t, MissedPolicy.SKIP, 0) == []


def test_skip_fires_only_the_newest_missed_slot() -> None:
    first = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = first + timedelta(minutes=30, seconds=5)
    assert due_slots("* * * * *", "UTC", first, now, MissedPolicy.SKIP, 0) == [
        first + timedelta(minutes=30)
    ]


def test_catch_up_fires_at_most_n_newest_slots() -> None:
    first = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = first + timedelta(minutes=30, seconds=5)
    slots = due_slots("* * * * *", "UTC", first, now, MissedPolicy.CATCH_UP, 3)
    assert slots == [first + timedelta(minutes=m) for m in (28, 29, 30)]


@pytest.mark.parametrize(
    ("cron", "tz", "field"),
    [
        ("not cron", "UTC", "cron"),
        ("61 * * * *", "UTC", "cron"),
        ("* * * * *", "Mars/Base", "timezone"),
    ],
)
def test_bad_cron_or_zone_is_refused_by_name(cron: str, tz: str, field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        check_cron(cron, tz)
    assert info.value.field == field
