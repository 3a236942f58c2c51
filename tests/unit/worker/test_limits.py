"""The one place that knows the columns' limits refuses what the database would."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from db.models import Artifact, CostRecord, Project, WorkflowRun
from worker import limits
from worker.errors import DefinitionError


def test_limits_are_read_from_the_models() -> None:
    assert Project.__table__.c.name.type.length == limits.PROJECT_MAX
    assert WorkflowRun.__table__.c.idempotency_key.type.length == limits.IDEMPOTENCY_KEY_MAX
    assert limits.COST_MODEL_MAX == CostRecord.__table__.c.model.type.length == 200
    assert limits.CONTENT_TYPE_MAX == Artifact.__table__.c.content_type.type.length == 255
    assert Decimal(10) ** 10 == limits.MONEY_BOUND


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\x00b", "NUL"),
        ("a\udc80", "lone surrogate"),
        ("", "empty"),
        ("x" * 201, "at most 200"),
        (3, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_check_text_refuses(value: Any, reason: str) -> None:
    with pytest.raises(DefinitionError, match=reason) as caught:
        limits.check_text("project", value, 200)
    assert caught.value.field == "project"


def test_check_text_accepts_the_longest_and_unicode() -> None:
    assert limits.check_text("project", "é" * 200, 200) == "é" * 200
    assert limits.check_text("note", "", 10, allow_empty=True) == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-1, "negative"),
        (Decimal("-0.01"), "negative"),
        (math.nan, "finite"),
        (math.inf, "finite"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        (Decimal("sNaN"), "finite"),
        (1e30, "below"),
        ("1e30", "below"),
        (10**10, "below"),
        ("abc", "not a number"),
        (True, "bool"),
        ([1], "must be a number"),
    ],
)
def test_check_money_refuses(value: Any, reason: str) -> None:
    with pytest.raises(DefinitionError, match=reason) as caught:
        limits.check_money("budget_usd", value)
    assert caught.value.field == "budget_usd"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, Decimal(0)), ("1.5", Decimal("1.5")), (0.25, Decimal("0.25")), (9999999999, None)],
)
def test_check_money_accepts(value: Any, expected: Decimal | None) -> None:
    assert limits.check_money("usd", value) == (expected if expected is not None else value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("abc", "integer"), (True, "integer"), (1.0, "integer"), (0, "from 1"), (2**31, "from 1")],
)
def test_check_int_refuses(value: Any, reason: str) -> None:
    with pytest.raises(DefinitionError, match=reason):
        limits.check_int("version", value, 1)
