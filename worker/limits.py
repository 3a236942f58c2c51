"""What the database accepts, in one place: checked before a value gets there.

The lengths and the money precision are read from the SQLAlchemy models, so they cannot
drift from the schema. Each check raises :class:`DefinitionError` naming the field; the
value itself is not echoed (it may be long, or unprintable).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Column, Numeric, String

from db.models import (
    ApiKey,
    ApprovalRequest,
    Artifact,
    CostRecord,
    Project,
    Schedule,
    Signal,
    Tenant,
    WorkflowDefinition,
    WorkflowRun,
)
from worker.errors import DefinitionError
from worker.serialization import text_problem


def _length(column: Column[Any]) -> int:
    kind = column.type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{column} has no length")
    return int(kind.length)


def _columns(model: Any) -> Any:
    return model.__table__.c


#: Most elements of one map step (each is a step row).
MAP_ITEMS_MAX = 100_000

#: Longest text of each column a caller or a step can fill.
TENANT_MAX = _length(_columns(Tenant).name)
PROJECT_MAX = _length(_columns(Project).name)
WORKFLOW_NAME_MAX = _length(_columns(WorkflowDefinition).name)
IDEMPOTENCY_KEY_MAX = _length(_columns(WorkflowRun).idempotency_key)
COST_PROVIDER_MAX = _length(_columns(CostRecord).provider)
COST_MODEL_MAX = _length(_columns(CostRecord).model)
CONTENT_TYPE_MAX = _length(_columns(Artifact).content_type)
API_KEY_NAME_MAX = _length(_columns(ApiKey).name)
SCHEDULE_NAME_MAX = _length(_columns(Schedule).name)
TIMEZONE_MAX = _length(_columns(Schedule).timezone)
SIGNAL_NAME_MAX = _length(_columns(Signal).name)
DECIDED_BY_MAX = _length(_columns(ApprovalRequest).decided_by)
#: A decision's comment: a Text column, held to what a person writes.
COMMENT_MAX = 10_000
CRON_MAX = _length(_columns(Schedule).cron)
#: Free text kept inside JSON (a definition's description, a non_retryable name).
DESCRIPTION_MAX = 2000
#: Integer columns (a definition's version) are 32-bit on PostgreSQL.
INT_MAX = 2**31 - 1
#: Token counts are integer columns too.
TOKENS_MAX = INT_MAX


def _money_bound(column: Column[Any]) -> tuple[Decimal, int]:
    kind = column.type
    if not isinstance(kind, Numeric) or kind.precision is None or kind.scale is None:
        raise TypeError(f"{column} is not a Numeric(precision, scale)")
    return Decimal(10) ** (kind.precision - kind.scale), int(kind.scale)


#: Money columns hold amounts below this (Numeric(18, 8): ten digits before the point).
MONEY_BOUND, MONEY_SCALE = _money_bound(_columns(CostRecord).usd)


def check_text(field: str, value: Any, max_len: int, *, allow_empty: bool = False) -> str:
    """``value`` as it may be stored in a ``String(max_len)`` column; refuse anything else."""
    if not isinstance(value, str):
        raise DefinitionError(field, f"must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise DefinitionError(field, "must not be empty")
    problem = text_problem(value)
    if problem:
        raise DefinitionError(field, problem)
    if len(value) > max_len:
        raise DefinitionError(field, f"is {len(value)} characters; at most {max_len} are allowed")
    return value


def check_int(field: str, value: Any, low: int, high: int = INT_MAX) -> int:
    """An integer (not a bool, not a string) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DefinitionError(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise DefinitionError(field, f"must be from {low} to {high}")
    return value


def check_money(field: str, value: Any) -> Decimal:
    """An amount of dollars the money columns hold: finite, not negative, in precision."""
    if isinstance(value, bool):
        raise DefinitionError(field, "must be a number, not a bool")
    if isinstance(value, float) and not math.isfinite(value):
        raise DefinitionError(field, "must be a finite number")
    if not isinstance(value, Decimal | int | float | str):
        raise DefinitionError(field, f"must be a number, not {type(value).__name__}")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise DefinitionError(field, "is not a number") from None
    if not amount.is_finite():
        raise DefinitionError(field, "must be a finite number")
    if amount < 0:
        raise DefinitionError(field, "must not be negative")
    if amount >= MONEY_BOUND:
        raise DefinitionError(
            field, f"must be below {MONEY_BOUND:,} (the money columns hold no more)"
        )
    return amount
