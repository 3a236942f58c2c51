"""Definition validation: every refusal names the field that is wrong; a valid spec passes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from worker.definitions import RetryPolicy, StepSpec, WorkflowSpec, parse_spec, validate_spec
from worker.errors import DefinitionError
from worker.serialization import checksum

REPORT: dict[str, Any] = {
    "name": "report",
    "description": "fetch, summarise, chart",
    "steps": [
        {"key": "fetch", "task": "fetch_pages"},
        {
            "key": "summarise",
            "task": "summarise",
            "after": ["fetch"],
            "retry": {"max_attempts": 3, "non_retryable": ["PermissionError"]},
        },
        {"key": "chart", "task": "chart", "after": ["fetch", "summarise"], "priority": 9},
    ],
}
TASKS = {"fetch_pages", "summarise", "chart"}


def spec_of(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A definition document with these steps."""
    return {"name": "wf", **top, "steps": list(steps)}


def step(key: str, *after: str, task: str = "t", **more: Any) -> dict[str, Any]:
    return {"key": key, "task": task, "after": list(after), **more}


def refused(source: Any, registered: set[str] | None = None) -> DefinitionError:
    """The error parsing and validating ``source`` raises."""
    with pytest.raises(DefinitionError) as caught:
        validate_spec(parse_spec(source), registered)
    return caught.value


# --- a valid spec -------------------------------------------------------------------------


def test_a_valid_spec_passes() -> None:
    spec = parse_spec(REPORT)
    validate_spec(spec, TASKS)  # raises on any refusal
    assert [s.key for s in spec.steps] == ["fetch", "summarise", "chart"]
    assert spec.steps[1].after == ("fetch",)
    assert spec.steps[1].retry.max_attempts == 3
    assert spec.steps[1].retry.non_retryable == ("PermissionError",)
    assert spec.steps[0].retry == RetryPolicy()


def test_json_yaml_bytes_dict_and_spec_give_the_same_spec() -> None:
    from_dict = parse_spec(REPORT)
    assert parse_spec(json.dumps(REPORT)) == from_dict
    assert parse_spec(json.dumps(REPORT).encode()) == from_dict
    assert parse_spec(yaml.safe_dump(REPORT)) == from_dict
    assert parse_spec(from_dict) is from_dict


def test_a_spec_built_in_python_validates() -> None:
    spec = WorkflowSpec(
        name="py",
        steps=(
            StepSpec(key="a", task="t"),
            StepSpec(key="b", task="t", after=("a",), retry=RetryPolicy(max_attempts=2)),
        ),
    )
    validate_spec(spec, {"t"})


def test_without_registered_names_the_task_check_is_skipped() -> None:
    validate_spec(parse_spec(REPORT), None)


def test_the_body_leaves_out_the_version() -> None:
    one = parse_spec({**REPORT, "version": 1})
    two = parse_spec({**REPORT, "version": 2})
    assert "version" not in one.body()
    assert checksum(one.body()) == checksum(two.body())
    changed = parse_spec({**REPORT, "description": "other"})
    assert checksum(changed.body()) != checksum(one.body())


def test_the_size_bounds_themselves_are_accepted() -> None:
    many = [step(f"s{i}") for i in range(5000)]
    spec = parse_spec(spec_of(*many, description="d" * 2000))
    validate_spec(spec, {"t"})
    assert len(spec.steps) == 5000
    parse_spec(spec_of(step("k" * 100), name="n" * 200))


# --- the document -------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["name: [unclosed", "{", "steps:\n  - key: a\n   bad: indent"])
def test_a_document_that_is_neither_json_nor_yaml(source: str) -> None:
    error = refused(source)
    assert error.field == "definition"
    assert "neither JSON nor YAML" in error.reason


@pytest.mark.parametrize("source", ["[1, 2]", "42", '"report"', "", "- a\n- b\n", b"null"])
def test_a_document_that_is_not_a_mapping(source: str | bytes) -> None:
    error = refused(source)
    assert error.field == "definition"
    assert "mapping" in error.reason


def test_refusals_are_not_retryable_and_carry_the_field_in_the_message() -> None:
    error = refused(spec_of())
    assert error.retryable is False
    assert str(error).startswith(f"{error.field}: ")


# --- the shape: each refusal names its field ---------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"steps": [step("a")]}, "name"),
        (spec_of(), "steps"),
        ({"name": "wf"}, "steps"),
        (spec_of(step("a"), name="has space"), "name"),
        (spec_of(step("a"), name="n" * 201), "name"),
        (spec_of(step("a"), name=""), "name"),
        (spec_of(step("a"), extra=1), "extra"),
        (spec_of(step("a"), version=0), "version"),
        (spec_of(step("a"), description="d" * 2001), "description"),
        (spec_of({"task": "t"}), "steps[0].key"),
        (spec_of(step("a"), {"key": "b"}), "steps[1]"),
        (spec_of(step("-lead")), "steps[0].key"),
        (spec_of(step("k" * 101)), "steps[0].key"),
        (spec_of(step("a/b")), "steps[0].key"),
        (spec_of(step("a\n")), "steps[0].key"),
        (spec_of(step("a", task="no spaces")), "steps[0].task"),
        (spec_of(step("a", bogus=True)), "steps[0].bogus"),
        (spec_of(step("a"), {"key": "b", "task": "t", "after": "a"}), "steps[1].after"),
        (spec_of(step("a"), {"key": "b", "task": "t", "after": ["a", 3]}), "steps[1].after[1]"),
        (spec_of(step("a", priority=10)), "steps[0].priority"),
        (spec_of(step("a", priority=-1)), "steps[0].priority"),
        (spec_of(step("a", timeout_s=0)), "steps[0].timeout_s"),
        (spec_of(step("a", timeout_s=7 * 86400 + 1)), "steps[0].timeout_s"),
        (spec_of(step("a", queue="bad queue")), "steps[0].queue"),
        (spec_of(step("a", retry={"max_attempts": 0})), "steps[0].retry.max_attempts"),
        (spec_of(step("a", retry={"max_attempts": 101})), "steps[0].retry.max_attempts"),
        (spec_of(step("a", retry={"jitter": 1.5})), "steps[0].retry.jitter"),
        (spec_of(step("a", retry={"backoff_base_s": -1})), "steps[0].retry.backoff_base_s"),
        (spec_of(step("a", retry={"backoff_max_s": 86401})), "steps[0].retry.backoff_max_s"),
        (spec_of(step("a", retry={"non_retryable": "KeyError"})), "steps[0].retry.non_retryable"),
        (spec_of(step("a", retry={"unknown": 1})), "steps[0].retry.unknown"),
    ],
)
def test_a_bad_shape_names_its_field(document: dict[str, Any], field: str) -> None:
    assert refused(document).field == field


def test_a_backoff_cap_below_its_base_is_refused() -> None:
    error = refused(spec_of(step("a", retry={"backoff_base_s": 10, "backoff_max_s": 1})))
    assert error.field == "steps[0].retry"
    assert "backoff_max_s" in error.reason


def test_too_many_steps() -> None:
    error = refused(spec_of(*(step(f"s{i}") for i in range(5001))))
    assert error.field == "steps"
    assert "5000" in error.reason


# --- the graph ----------------------------------------------------------------------------------


def test_a_duplicate_key_is_named_at_its_second_use() -> None:
    error = refused(spec_of(step("a"), step("b"), step("a")))
    assert error.field == "steps[2].key"
    assert "'a'" in error.reason


def test_an_unknown_after_key_is_named_by_position() -> None:
    error = refused(spec_of(step("a"), step("b", "a", "ghost")))
    assert error.field == "steps[1].after[1]"
    assert "'ghost'" in error.reason


def test_a_step_after_itself_is_refused() -> None:
    error = refused(spec_of(step("a"), step("b", "a", "b")))
    assert error.field == "steps[1].after[1]"
    assert "itself" in error.reason


def test_a_step_listed_twice_in_after_is_refused() -> None:
    error = refused(spec_of(step("a"), step("b", "a", "a")))
    assert error.field == "steps[1].after"


def test_a_cycle_is_refused_with_its_path() -> None:
    error = refused(spec_of(step("start"), step("x", "start", "z"), step("y", "x"), step("z", "y")))
    assert error.field == "steps"
    assert error.reason.startswith("cycle ")
    path = error.reason.removeprefix("cycle ").split(" -> ")
    assert path[0] == path[-1]
    assert set(path) == {"x", "y", "z"}


def test_a_two_step_cycle_is_refused() -> None:
    error = refused(spec_of(step("a", "b"), step("b", "a")))
    assert error.field == "steps"
    assert "a -> b" in error.reason or "b -> a" in error.reason


def test_an_unregistered_step_name_is_named_by_position() -> None:
    error = refused(spec_of(step("a", task="known"), step("b", "a", task="missing")), {"known"})
    assert error.field == "steps[1].task"
    assert "'missing'" in error.reason
    assert "CAIRN_STEP_MODULES" in error.reason


def test_with_nothing_registered_every_step_is_unregistered() -> None:
    assert refused(REPORT, set()).field == "steps[0].task"


def test_the_graph_is_checked_before_the_step_names() -> None:
    error = refused(spec_of(step("a", "a", task="missing")), set())
    assert error.field == "steps[0].after[0]"


@st.composite
def acyclic_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A definition whose steps may come after earlier ones only."""
    n = draw(st.integers(min_value=1, max_value=15))
    steps = []
    for j in range(n):
        deps = draw(st.lists(st.integers(0, j - 1), unique=True)) if j else []
        steps.append(step(f"s{j}", *(f"s{i}" for i in deps)))
    return spec_of(*steps)


@given(acyclic_specs())
def test_any_acyclic_spec_passes(document: dict[str, Any]) -> None:
    validate_spec(parse_spec(document), {"t"})


@given(document=acyclic_specs(), data=st.data())
def test_any_back_edge_is_refused_as_a_cycle(document: dict[str, Any], data: st.DataObject) -> None:
    steps = document["steps"]
    if len(steps) < 2:
        steps.append(step("extra", steps[0]["key"]))
    later = data.draw(st.integers(min_value=1, max_value=len(steps) - 1))
    if not steps[later]["after"]:
        steps[later]["after"].append(steps[0]["key"])
    # ``later`` comes after ``earlier``; make ``earlier`` come after ``later`` too.
    earlier = data.draw(st.sampled_from(steps[later]["after"]))
    index = next(i for i, s in enumerate(steps) if s["key"] == earlier)
    steps[index]["after"].append(steps[later]["key"])
    error = refused(document, {"t"})
    assert error.field == "steps"
    assert error.reason.startswith("cycle ")


@pytest.mark.parametrize(
    ("source", "key", "where"),
    [
        ('{"name": "a", "name": "b", "steps": []}', "name", "object"),
        ('{"name": "a", "steps": [{"key": "s", "task": "t", "task": "u"}]}', "task", "object"),
        (
            "name: a\nsteps:\n  - key: s\n    task: t\n    retry: {}\n    retry: {}\n",
            "retry",
            "line 6",
        ),
        ("name: a\nname: b\nsteps: []\n", "name", "line 2"),
    ],
)
def test_a_key_named_twice_is_refused_not_silently_replaced(
    source: str, key: str, where: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_spec(source)
    assert caught.value.field == "definition"
    assert f"the key {key!r} appears twice" in caught.value.reason
    assert where in caught.value.reason


def test_yaml_merge_keys_may_still_override_what_they_merge() -> None:
    source = (
        "name: merged\n"
        "steps:\n"
        "  - &base {key: a, task: t.a, timeout_s: 5}\n"
        "  - {<<: *base, key: b, timeout_s: 9}\n"
    )
    first, second = parse_spec(source).steps
    assert (first.key, first.timeout_s) == ("a", 5)
    assert (second.key, second.task, second.timeout_s) == ("b", "t.a", 9)
