"""Roll-up: a step's output as passed on, and a finished run's outputs."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from worker.blobs import MARKER, is_marker
from worker.definitions.dag import sinks
from worker.machine.rollup import output_value, run_outputs

SHA = "ab" * 32


# --- output_value ------------------------------------------------------------------------


def test_an_inline_output_is_passed_on_as_it_is() -> None:
    output = {"pages": [1, 2], "ok": True}
    assert output_value(output, None, None) is output


def test_no_output_stays_none() -> None:
    assert output_value(None, None, None) is None


def test_a_stored_output_is_passed_on_as_its_marker() -> None:
    marker = output_value(None, "runs/r1/steps/s1/output.json", SHA)
    assert marker == {"$blob": "runs/r1/steps/s1/output.json", "sha256": SHA}
    assert is_marker(marker)
    assert marker is not None
    assert marker[MARKER] == "runs/r1/steps/s1/output.json"


def test_the_marker_wins_over_an_inline_value() -> None:
    assert output_value({"stale": 1}, "k", SHA) == {"$blob": "k", "sha256": SHA}


def test_half_a_marker_is_not_a_marker() -> None:
    # A blob key without its checksum (or the reverse) cannot be verified on read:
    # the inline value is what is passed on.
    assert output_value({"x": 1}, "k", None) == {"x": 1}
    assert output_value({"x": 1}, None, SHA) == {"x": 1}
    assert output_value(None, "k", None) is None


@given(
    key=st.text(min_size=1, max_size=50),
    sha=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_every_stored_output_gives_a_marker_blobs_recognise(key: str, sha: str) -> None:
    marker = output_value({"ignored": True}, key, sha)
    assert is_marker(marker)
    assert marker == {MARKER: key, "sha256": sha}


# --- run_outputs --------------------------------------------------------------------------


def test_a_run_outputs_are_its_sinks_outputs_by_key() -> None:
    outputs: dict[str, dict[str, Any] | None] = {
        "fetch": {"pages": 3},
        "summarise": {"text": "short"},
        "chart": {"png": "k"},
    }
    assert run_outputs(outputs, ["summarise", "chart"]) == {
        "summarise": {"text": "short"},
        "chart": {"png": "k"},
    }


def test_inner_steps_are_left_out() -> None:
    assert "fetch" not in run_outputs({"fetch": {"a": 1}, "end": {"b": 2}}, ["end"])


def test_a_sink_without_output_is_listed_as_none() -> None:
    assert run_outputs({"a": None}, ["a"]) == {"a": None}
    assert run_outputs({}, ["never_ran"]) == {"never_ran": None}


def test_outputs_keep_the_sink_order() -> None:
    outputs = {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}
    assert list(run_outputs(outputs, ["c", "a", "b"])) == ["c", "a", "b"]


def test_no_sinks_no_outputs() -> None:
    assert run_outputs({"a": {"n": 1}}, []) == {}


def test_a_diamond_rolls_up_to_its_one_end() -> None:
    after = {"start": [], "left": ["start"], "right": ["start"], "join": ["left", "right"]}
    outputs = {key: {"from": key} for key in after}
    assert run_outputs(outputs, sinks(after)) == {"join": {"from": "join"}}


def test_stored_sink_outputs_roll_up_as_markers() -> None:
    rows = [("a", {"n": 1}, None, None), ("b", None, "blob/b", SHA)]
    outputs = {key: output_value(out, blob, sha) for key, out, blob, sha in rows}
    assert run_outputs(outputs, ["a", "b"]) == {
        "a": {"n": 1},
        "b": {"$blob": "blob/b", "sha256": SHA},
    }


@given(
    outputs=st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        max_size=8,
    ),
    extra=st.lists(st.text(min_size=1, max_size=5), max_size=3),
    data=st.data(),
)
def test_run_outputs_holds_exactly_the_sinks(
    outputs: dict[str, dict[str, Any] | None], extra: list[str], data: st.DataObject
) -> None:
    chosen = data.draw(st.lists(st.sampled_from(sorted(outputs)), unique=True)) if outputs else []
    sink_keys = list(dict.fromkeys([*chosen, *extra]))
    rolled = run_outputs(outputs, sink_keys)
    assert list(rolled) == sink_keys
    for key in sink_keys:
        assert rolled[key] == outputs.get(key)
