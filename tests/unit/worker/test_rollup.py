"""Roll-up: a step's output as passed on (a finished run's outputs are its sink steps'
ones, selected in SQL by ``ending.finish_run`` and tested with real runs)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.blobs import MARKER, is_marker
from worker.machine.rollup import output_value

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
