"""DAG helpers: topological order and cycle detection over ``after`` lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.definitions.dag import find_cycle, topological_order

Edges = dict[str, list[str]]


@st.composite
def dags(draw: st.DrawFn, min_size: int = 0) -> Edges:
    """A random DAG: node ``nJ`` may come after ``nI`` only when I < J, so it has no cycle.

    The keys are listed in a random order, so nothing may rely on input order being a
    topological one.
    """
    n = draw(st.integers(min_value=min_size, max_value=25))
    keys = [f"n{i}" for i in range(n)]
    edges: Edges = {}
    for j, key in enumerate(keys):
        deps = draw(st.lists(st.integers(min_value=0, max_value=j - 1), unique=True)) if j else []
        edges[key] = [keys[i] for i in deps]
    order = draw(st.permutations(keys))
    return {key: edges[key] for key in order}


def assert_is_cycle(cycle: list[str] | None, edges: Mapping[str, Sequence[str]]) -> None:
    """``cycle`` is a closed simple path that follows ``after`` links."""
    assert cycle is not None
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    for here, there in pairwise(cycle):
        assert there in edges[here], f"{here} does not come after {there}"


# --- topological_order ---------------------------------------------------------------------


def test_an_empty_graph() -> None:
    assert topological_order({}) == []
    assert find_cycle({}) is None


def test_each_key_comes_after_its_dependencies() -> None:
    edges = {"summarise": ["fetch"], "chart": ["fetch", "summarise"], "fetch": []}
    assert topological_order(edges) == ["fetch", "summarise", "chart"]


def test_independent_keys_keep_their_input_order() -> None:
    assert topological_order({"b": [], "c": [], "a": []}) == ["b", "c", "a"]
    edges = {"z": ["root"], "y": ["root"], "root": [], "x": ["root"]}
    assert topological_order(edges) == ["root", "z", "y", "x"]


def test_a_chain_given_backwards_is_ordered() -> None:
    edges = {"d": ["c"], "c": ["b"], "b": ["a"], "a": []}
    assert topological_order(edges) == ["a", "b", "c", "d"]


def test_a_listed_twice_dependency_is_harmless() -> None:
    assert topological_order({"b": ["a", "a"], "a": []}) == ["a", "b"]


def test_ordering_leaves_its_input_alone() -> None:
    edges = {"b": ["a"], "a": []}
    topological_order(edges)
    assert edges == {"b": ["a"], "a": []}


def test_ordering_a_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        topological_order({"a": ["b"], "b": ["a"], "c": []})


def test_ordering_with_an_unknown_dependency_is_refused_not_looped() -> None:
    # validate_spec reports unknown keys first; the helper must still end.
    with pytest.raises(ValueError, match=r"unknown step .ghost."):
        topological_order({"a": ["ghost"]})


@given(dags())
def test_topological_order_respects_every_edge(edges: Edges) -> None:
    order = topological_order(edges)
    assert sorted(order) == sorted(edges)
    position = {key: i for i, key in enumerate(order)}
    for key, deps in edges.items():
        for dep in deps:
            assert position[dep] < position[key]


# --- find_cycle ------------------------------------------------------------------------------


def test_no_cycle_in_a_dag() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_a_step_after_itself_is_a_cycle() -> None:
    edges = {"a": [], "loop": ["loop"]}
    assert find_cycle(edges) == ["loop", "loop"]


def test_a_two_step_cycle() -> None:
    edges = {"a": ["b"], "b": ["a"]}
    cycle = find_cycle(edges)
    assert_is_cycle(cycle, edges)
    assert set(cycle or ()) == {"a", "b"}


def test_the_cycle_found_is_the_cycle_not_the_path_into_it() -> None:
    edges = {"entry": ["x"], "x": ["y"], "y": ["z"], "z": ["x"]}
    cycle = find_cycle(edges)
    assert_is_cycle(cycle, edges)
    assert "entry" not in (cycle or [])
    assert set(cycle or ()) == {"x", "y", "z"}


def test_a_cycle_behind_acyclic_parts_is_found() -> None:
    edges = {"a": [], "b": ["a"], "c": ["b"], "p": ["q"], "q": ["r"], "r": ["p"]}
    assert_is_cycle(find_cycle(edges), edges)


def test_unknown_keys_are_ignored_by_cycle_detection_and_sinks() -> None:
    edges = {"a": ["ghost"], "b": ["a"]}
    assert find_cycle(edges) is None


def test_a_5000_step_chain_does_not_hit_the_recursion_limit() -> None:
    n = 5000
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}
    assert find_cycle(chain) is None
    closed = chain | {"s0": [f"s{n - 1}"]}
    cycle = find_cycle(closed)
    assert_is_cycle(cycle, closed)
    assert len(cycle or ()) == n + 1


@given(dags())
def test_a_random_dag_has_no_cycle(edges: Edges) -> None:
    assert find_cycle(edges) is None


@given(edges=dags(min_size=2), data=st.data())
def test_a_back_edge_makes_a_cycle_that_is_reported(edges: Edges, data: st.DataObject) -> None:
    with_deps = sorted(key for key, deps in edges.items() if deps)
    if not with_deps:
        # No edge to turn back: make one, so every example tests a cycle.
        first, second = sorted(edges)[:2]
        edges[second].append(first)
        with_deps = [second]
    end = data.draw(st.sampled_from(with_deps))
    # Walk back along ``after`` links to an ancestor, then make it come after ``end``.
    start = end
    for _ in range(data.draw(st.integers(min_value=1, max_value=len(edges)))):
        if not edges[start]:
            break
        start = data.draw(st.sampled_from(edges[start]))
    assert start != end
    cyclic = {key: [*deps] for key, deps in edges.items()}
    cyclic[start].append(end)

    assert_is_cycle(find_cycle(cyclic), cyclic)
    with pytest.raises(ValueError, match="cycle"):
        topological_order(cyclic)


@given(edges=dags(min_size=1), data=st.data())
def test_a_self_loop_anywhere_is_reported(edges: Edges, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(edges)))
    cyclic = {k: [*deps] for k, deps in edges.items()}
    cyclic[key].append(key)
    assert_is_cycle(find_cycle(cyclic), cyclic)
    with pytest.raises(ValueError, match="cycle"):
        topological_order(cyclic)
