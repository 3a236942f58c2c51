"""Cron slots: pure functions over a cron expression, a time zone and the clock.

Expressions have 5 fields (minute precision) or 6 (a trailing seconds field), as
croniter reads them; slots are computed in the schedule's time zone and returned in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from db.states import MissedPolicy
from worker.errors import DefinitionError

#: Never fire more than this many slots in one tick, whatever the policy says.
MAX_SLOTS_PER_TICK = 1000


def check_cron(expression: str, timezone: str) -> None:
    """Refuse an invalid expression or an unknown time zone, naming which."""
    if not croniter.is_valid(expression):
        raise DefinitionError("cron", f"{expression!r} is not a cron expression")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DefinitionError("timezone", f"{timezone!r} is not a known time zone") from None


def next_slot(expression: str, timezone: str, after: datetime) -> datetime:
    """The first slot strictly after ``after``, in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    nxt: datetime = croniter(expression, local).get_next(datetime)
    return nxt.astimezone(UTC)


def due_slots(
    expression: str,
    timezone: str,
    next_fire_at: datetime,
    now: datetime,
    policy: MissedPolicy,
    catch_up_max: int,
) -> list[datetime]:
    """The slots to fire now, oldest first, given the first slot not yet fired.

    ``skip`` fires only the newest due slot; ``catch_up`` fires the newest
    ``max(1, catch_up_max)`` due slots, so a long downtime does not start a flood.
    """
    if next_fire_at > now:
        return []
    slots = [next_fire_at]
    while len(slots) < MAX_SLOTS_PER_TICK:
        following = next_slot(expression, timezone, slots[-1])
        if following > now:
            break
        slots.append(following)
    keep = 1 if policy == MissedPolicy.SKIP else max(1, catch_up_max)
    return slots[-keep:]
