"""Pure logic of forks, diffs and maps: JSON-aware changes, the list a map maps over,
what a fork runs again, and the map step's definition."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from worker.definitions import parse_spec, validate_spec
from worker.definitions.spec import MapSpec
from worker.diff import Change, RunSide, StepSide, diff_runs, json_changes, render
from worker.errors import DefinitionError
from worker.machine.fork import downstream_of
from worker.machine.maps import MapError, element_key, items_at


def test_json_changes_name_paths_in_document_order() -> None:
    before = {"a": 1, "b": {"c": [1, 2, 3], "d": "x"}, "gone": True, "odd key": 1}
    after = {"a": 1, "b": {"c": [1, 5], "d": "x", "e": None}, "new": [], "odd key": 2}
    assert json_changes(before, after) == [
        Change("b.c[1]", "changed", 2, 5),
        Change("b.c[2]", "removed", before=3),
        Change("b.e", "added", after=None),
        Change("gone", "removed", before=True),
        Change('["odd key"]', "changed", 1, 2),
        Change("new", "added", after=[]),
    ]


def test_json_changes_tell_types_apart() -> None:
    assert json_changes({"n": 1}, {"n": 1.0}) == [Change("n", "changed", 1, 1.0)]
    assert json_changes({"n": True}, {"n": 1}) == [Change("n", "changed", True, 1)]
    assert json_changes([1, {"x": 1}], [1, {"x": 1}]) == []
    assert json_changes("a", "b") == [Change("", "changed", "a", "b")]


def test_nested_keys_that_are_not_names_are_quoted() -> None:
    assert [c.path for c in json_changes({"a": {"x.y": 1}}, {"a": {"x.y": 2}})] == ['a["x.y"]']
    assert [c.path for c in json_changes({"report.pdf": "1"}, {"report.pdf": "2"})] == [
        "report.pdf"
    ]


def side(run_id: uuid.UUID, steps: dict[str, StepSide], **run: Any) -> RunSide:
    return RunSide(
        id=run_id,
        workflow=run.get("workflow", "w"),
        status="succeeded",
        inputs=run.get("inputs", {}),
        cost_usd=Decimal(0),
        parent_run_id=run.get("parent"),
        forked_at=run.get("forked_at"),
        steps=steps,
    )


def step(key: str, output: Any, origin: uuid.UUID | None = None, usd: str = "0") -> StepSide:
    return StepSide(key, "succeeded", {}, output, {}, Decimal(usd), origin, uuid.uuid4())


def test_a_diff_sees_reuse_and_changes_and_renders_them() -> None:
    a_id, b_id = uuid.uuid4(), uuid.uuid4()
    s1 = step("s1", {"v": 1})
    a = side(a_id, {"s1": s1, "s2": step("s2", {"v": 2}, usd="0.5")}, inputs={"t": "x"})
    b_steps = {"s1": step("s1", {"v": 1}, origin=s1.id), "s2": step("s2", {"v": 3}, usd="0.7")}
    b = side(b_id, b_steps, inputs={"t": "y"}, parent=a_id, forked_at="s2")
    diff = diff_runs(a, b)
    assert diff.lineage == "b was forked from a at step s2"
    assert diff.changed_steps == ["s2"]
    assert diff.steps[0].reused
    text = render(diff)
    assert "s1  same (reused, not run again)" in text
    assert "~ v: 2 -> 3" in text
    assert "cost  $0.500000 -> $0.700000" in text
    assert '~ t: "x" -> "y"' in text


def test_runs_of_two_workflows_are_not_diffed() -> None:
    with pytest.raises(DefinitionError, match=r"workflow 'w'.*'other'"):
        diff_runs(side(uuid.uuid4(), {}), side(uuid.uuid4(), {}, workflow="other"))


def test_items_at_walks_fields_and_names_what_is_wrong() -> None:
    spec = MapSpec(over="split.out.items", task="t")
    assert items_at({"out": {"items": [1, 2]}}, spec) == [1, 2]
    with pytest.raises(MapError, match=r"the output of 'split\.out' has no 'items'"):
        items_at({"out": {}}, spec)
    with pytest.raises(MapError, match=r"'split\.out\.items' is a str, not a list"):
        items_at({"out": {"items": "no"}}, spec)
    with pytest.raises(MapError, match="has no 'out'"):
        items_at(None, spec)
    assert element_key("each", 12) == "each[12]"


def chain(*keys: str, **extra: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        steps.append({"key": key, "task": "t", "after": [keys[i - 1]] if i else []})
    return {"name": "w", "steps": steps, **extra}


def test_a_fork_runs_the_step_and_everything_after_it() -> None:
    spec = parse_spec(
        {
            "name": "w",
            "steps": [
                {"key": "a", "task": "t"},
                {"key": "b", "task": "t", "after": ["a"]},
                {"key": "c", "task": "t", "after": ["a"]},
                {"key": "d", "task": "t", "after": ["b", "c"]},
            ],
        }
    )
    assert downstream_of(spec, "b") == {"b", "d"}
    assert downstream_of(spec, "a") == {"a", "b", "c", "d"}
    assert downstream_of(spec, "d") == {"d"}


def test_a_map_step_is_defined_by_over_task_and_max_parallel() -> None:
    spec = parse_spec(
        {
            "name": "m",
            "steps": [
                {"key": "split", "task": "t.split"},
                {"key": "each", "after": ["split"], "map": {"over": "split.items", "task": "t.sq"}},
            ],
        }
    )
    validate_spec(spec, {"t.split", "t.sq"})
    each = spec.steps[1]
    assert each.runs == "t.sq"
    assert each.map is not None
    assert each.map.max_parallel == 10
    assert (each.map.upstream, each.map.path) == ("split", ("items",))
    with pytest.raises(DefinitionError, match=r"steps\[1\]\.map\.task"):
        validate_spec(spec, {"t.split"})
    # Specs without maps keep their checksum body (no "map" key).
    assert "map" not in parse_spec(chain("a", "b")).body()["steps"][0]


@pytest.mark.parametrize(
    ("map_", "field"),
    [
        ({"over": "split", "task": "t"}, "steps[1].map.over"),
        ({"over": "split.items", "task": "t", "max_parallel": 0}, "steps[1].map.max_parallel"),
        ({"over": "split.items"}, "steps[1].map.task"),
    ],
)
def test_a_bad_map_names_its_field(map_: dict[str, Any], field: str) -> None:
    document = {
        "name": "m",
        "steps": [{"key": "split", "task": "t"}, {"key": "each", "after": ["split"], "map": map_}],
    }
    with pytest.raises(DefinitionError) as caught:
        parse_spec(document)
    assert caught.value.field == field


def test_a_concurrency_key_is_rendered_under_its_tenant() -> None:
    from worker.definitions.spec import ConcurrencySpec
    from worker.machine.concurrency import render_key

    tenant = uuid.UUID(int=7)
    spec = ConcurrencySpec(key="openai:{model}:{n}", limit=2)
    key = render_key(tenant, spec, {"model": "gpt", "n": 3}, "concurrency")
    assert key == f"{tenant.hex}:openai:gpt:3"
    with pytest.raises(DefinitionError, match="names input 'model'"):
        render_key(tenant, spec, {"n": 1}, "concurrency")
    with pytest.raises(DefinitionError, match="renders longer"):
        render_key(tenant, spec, {"model": "x" * 300, "n": 1}, "concurrency")


@pytest.mark.parametrize("template", ["{", "{a.b}", "{0}", "{}"])
def test_a_bad_key_template_is_refused(template: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_spec(
            {
                "name": "w",
                "steps": [{"key": "a", "task": "t", "concurrency": {"key": template, "limit": 1}}],
            }
        )
    assert caught.value.field == "steps[0].concurrency.key"
