"""JSON checks: canonical dumps, the depth and size limits, and what is not JSON."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.errors import DefinitionError, PayloadTooLarge
from worker.serialization import check_json, checksum, dumps, encode_checked, sha256_hex

DEPTH = 64

#: Text every store keeps: no NUL, no lone surrogate.
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


def nested(levels: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``levels - 1`` lists: a value ``levels`` levels deep."""
    value = leaf
    for _ in range(levels - 1):
        value = [value]
    return value


def refusal(value: Any, field: str = "inputs", max_depth: int = DEPTH) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        check_json(value, field, max_depth=max_depth)
    return caught.value


# --- canonical dumps ----------------------------------------------------------------------


def test_dumps_sorts_keys_and_drops_spaces() -> None:
    assert dumps({"b": 1, "a": [1, 2, {"d": None, "c": True}]}) == (
        '{"a":[1,2,{"c":true,"d":null}],"b":1}'
    )


def test_dumps_writes_unicode_as_text() -> None:
    assert dumps({"name": "café ☕"}) == '{"name":"café ☕"}'


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_dumps_refuses_nan_and_infinity(number: float) -> None:
    with pytest.raises(ValueError, match="JSON"):
        dumps({"x": number})


def test_dumps_writes_tuples_as_lists() -> None:
    assert dumps({"t": (1, 2)}) == dumps({"t": [1, 2]}) == '{"t":[1,2]}'


@given(value=json_values)
def test_dumps_round_trips_json(value: Any) -> None:
    assert json.loads(dumps(value)) == value
    assert dumps(json.loads(dumps(value))) == dumps(value)


@given(
    items=st.dictionaries(texts, json_values, min_size=1, max_size=8),
    data=st.data(),
)
def test_dumps_and_checksum_ignore_key_order(items: dict[str, Any], data: st.DataObject) -> None:
    shuffled = dict(data.draw(st.permutations(list(items.items()))))
    assert dumps(shuffled) == dumps(items)
    assert checksum({"outer": shuffled}) == checksum({"outer": items})


def test_checksum_is_the_sha256_of_the_canonical_json() -> None:
    value = {"b": [1, "é"], "a": None}
    assert checksum(value) == hashlib.sha256(dumps(value).encode("utf-8")).hexdigest()
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_different_values_have_different_checksums() -> None:
    assert checksum({"a": 1}) != checksum({"a": 2})
    assert checksum({"a": 1}) != checksum({"a": "1"})
    assert checksum([1, 2]) != checksum([2, 1])


# --- check_json: what passes --------------------------------------------------------------


@given(value=json_values)
def test_plain_json_passes(value: Any) -> None:
    check_json(value, "inputs", max_depth=DEPTH)


def test_scalars_and_empty_containers_pass() -> None:
    values: list[Any] = [None, True, False, 0, -1, 2**62, 1.5, -0.0, "", "text", [], {}, ()]
    for value in values:
        check_json(value, "inputs", max_depth=1)


# --- check_json: depth ----------------------------------------------------------------------


def test_a_value_exactly_at_the_depth_limit_passes() -> None:
    check_json(nested(DEPTH), "inputs", max_depth=DEPTH)
    check_json(nested(2), "inputs", max_depth=2)


def test_one_level_deeper_is_refused_at_the_deep_part() -> None:
    error = refusal(nested(DEPTH + 1))
    assert error.field == "inputs" + "[0]" * DEPTH
    assert f"deeper than {DEPTH}" in error.reason


def test_depth_counts_dicts_too() -> None:
    check_json({"a": {"b": 1}}, "inputs", max_depth=3)
    error = refusal({"a": {"b": {"c": 1}}}, max_depth=3)
    assert error.field == "inputs.a.b.c"


def test_the_depth_of_the_deepest_branch_counts() -> None:
    value = {"shallow": 1, "deep": nested(DEPTH)}
    error = refusal(value)
    assert error.field.startswith("inputs.deep[0]")


def test_a_value_that_contains_itself_is_refused_not_looped() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "deeper than" in refusal(loop).reason
    cycle: dict[str, Any] = {}
    cycle["again"] = cycle
    assert "deeper than" in refusal(cycle).reason


@given(
    levels=st.integers(min_value=1, max_value=200), limit=st.integers(min_value=2, max_value=100)
)
def test_depth_limit_is_exact(levels: int, limit: int) -> None:
    value = nested(levels, {"k": "v"}) if levels > 1 else {"k": "v"}
    depth = levels + 1  # the dict's value is one level below the dict
    if depth <= limit:
        check_json(value, "v", max_depth=limit)
    else:
        assert "deeper than" in refusal(value, "v", limit).reason


# --- check_json: what is not JSON -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (b"bytes", "bytes"),
        (object(), "object"),
        (datetime(2026, 1, 1, tzinfo=UTC), "datetime"),
        (Decimal("1.5"), "Decimal"),
        (1 + 2j, "complex"),
    ],
)
def test_a_non_json_type_is_refused_by_name(value: Any, type_name: str) -> None:
    error = refusal({"ok": 1, "bad": [0, value]})
    assert error.field == "inputs.bad[1]"
    assert type_name in error.reason


@pytest.mark.parametrize("key", [1, None, 2.5, ("t",), True])
def test_a_non_string_key_is_refused(key: Any) -> None:
    error = refusal({"outer": {key: 1}})
    assert error.field == "inputs.outer"
    assert "not a string" in error.reason


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_where_they_are(number: float) -> None:
    error = refusal({"a": [1.0, number]})
    assert error.field == "inputs.a[1]"
    assert "not a JSON number" in error.reason


def test_when_several_parts_are_bad_one_of_them_is_named() -> None:
    error = refusal([math.nan, "ok", math.inf])
    assert error.field in {"inputs[0]", "inputs[2]"}


def test_the_field_given_starts_every_path() -> None:
    assert refusal({"a": math.nan}, field="steps[3].output").field == "steps[3].output.a"
    assert refusal(math.nan, field="checkpoint").field == "checkpoint"


# --- encode_checked: the size limit -------------------------------------------------------------


def test_encode_checked_returns_the_canonical_bytes() -> None:
    value = {"b": "é", "a": [1, 2]}
    assert encode_checked(value, "inputs", max_depth=DEPTH, limit_bytes=1024) == (
        dumps(value).encode("utf-8")
    )


def test_a_value_exactly_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    value = {"pad": "x" * 100}
    size = len(dumps(value).encode())
    assert encode_checked(value, "inputs", max_depth=DEPTH, limit_bytes=size)
    with pytest.raises(PayloadTooLarge) as caught:
        encode_checked(value, "inputs", max_depth=DEPTH, limit_bytes=size - 1)
    message = str(caught.value)
    assert message.startswith("inputs: ")
    assert f"{size} bytes" in message
    assert "CAIRN_INLINE_LIMIT_BYTES" in message


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    value = "é" * 10  # 10 characters, 20 bytes, plus two quotes
    assert len(dumps(value)) == 12
    encode_checked(value, "v", max_depth=DEPTH, limit_bytes=22)
    with pytest.raises(PayloadTooLarge):
        encode_checked(value, "v", max_depth=DEPTH, limit_bytes=21)


def test_a_bad_value_is_refused_as_bad_before_its_size_counts() -> None:
    with pytest.raises(DefinitionError):
        encode_checked({"x": math.nan, "pad": "x" * 100}, "v", max_depth=DEPTH, limit_bytes=10)


@given(value=json_values, limit=st.integers(min_value=1, max_value=400))
def test_encode_checked_refuses_exactly_the_values_over_the_limit(value: Any, limit: int) -> None:
    size = len(dumps(value).encode())
    if size <= limit:
        assert encode_checked(value, "v", max_depth=DEPTH, limit_bytes=limit) == (
            dumps(value).encode()
        )
    else:
        with pytest.raises(PayloadTooLarge):
            encode_checked(value, "v", max_depth=DEPTH, limit_bytes=limit)
