"""Definitions are strict: numbers are numbers, text is storable, depth is bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.definitions import parse_spec
from worker.errors import DefinitionError
from worker.serialization import check_json


def _spec(step: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"name": "w", "steps": [{"key": "a", "task": "t.echo", **(step or {})}], **top}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_spec({"retry": {"max_attempts": "3"}}), "steps[0].retry.max_attempts"),
        (_spec({"retry": {"max_attempts": True}}), "steps[0].retry.max_attempts"),
        (_spec({"retry": {"max_attempts": 3.0}}), "steps[0].retry.max_attempts"),
        (_spec({"timeout_s": "10"}), "steps[0].timeout_s"),
        (_spec({"timeout_s": True}), "steps[0].timeout_s"),
        (_spec({"priority": "5"}), "steps[0].priority"),
        (_spec({"retry": {"jitter": "0.1"}}), "steps[0].retry.jitter"),
        (_spec({"retry": {"backoff_base_s": float("nan")}}), "steps[0].retry.backoff_base_s"),
        (_spec(version="2"), "version"),
        (_spec(version=2**31), "version"),
        (_spec(description="a\x00b"), "description"),
        (_spec(description="a\udc80"), "description"),
        (_spec(description="x" * 2001), "description"),
        (_spec({"retry": {"non_retryable": ["Bad\x00"]}}), "steps[0].retry.non_retryable"),
        (_spec({"retry": {"non_retryable": ["\udc80"]}}), "steps[0].retry.non_retryable"),
        (_spec({"retry": {"non_retryable": [""]}}), "steps[0].retry.non_retryable"),
        (_spec({"key": 5}), "steps[0].key"),
        (_spec({"x\x00": 1}), "steps[0]['x\\x00']"),
    ],
)
def test_bad_values_are_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_spec(spec)
    assert caught.value.field == field
    # the same through JSON text, where it can be written
    try:
        text = json.dumps(spec)
    except (ValueError, UnicodeEncodeError):
        return
    with pytest.raises(DefinitionError) as caught:
        parse_spec(text)
    assert caught.value.field == field


def test_whole_numbers_for_floats_and_lists_for_tuples_still_pass() -> None:
    spec = parse_spec(_spec({"timeout_s": 10, "retry": {"max_attempts": 3, "jitter": 0}}))
    assert spec.steps[0].timeout_s == 10.0
    assert spec.steps[0].retry.max_attempts == 3


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,
        '{"name": "w", "steps": ' + "[" * 10_000 + "]" * 10_000 + "}",
        "a:\n  " + "- " * 10_000 + "x",
    ],
)
def test_deep_documents_are_one_clean_error(text: str) -> None:
    with pytest.raises(DefinitionError, match=r"definition: is nested too deeply|steps"):
        parse_spec(text)


def test_text_that_is_not_utf8_is_one_clean_error() -> None:
    with pytest.raises(DefinitionError, match="not UTF-8"):
        parse_spec(b'{"name": "\xff"}')


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"a\x00": 1}, "output['a\\x00']"),
        ({"a": {"\udc80": 1}}, "output.a['\\udc80']"),
        ({"a": ["ok", "x\udc80"]}, "output.a[1]"),
        ({"a": "x\x00"}, "output.a"),
    ],
)
def test_json_values_refuse_nul_and_surrogates_naming_the_path(
    value: dict[str, Any], field: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        check_json(value, "output", max_depth=8)
    assert caught.value.field == field


def test_deep_values_are_refused_without_recursion() -> None:
    value: Any = 1
    for _ in range(10_000):
        value = [value]
    with pytest.raises(DefinitionError, match="nested deeper than 64"):
        check_json({"x": value}, "inputs", max_depth=64)
