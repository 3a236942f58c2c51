"""Pure decisions about a run as a whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker import blobs


def run_outputs(
    outputs: Mapping[str, dict[str, Any] | None], sink_keys: list[str]
) -> dict[str, Any]:
    """A finished run's outputs: the outputs of its sink steps, by step key."""
    return {key: outputs.get(key) for key in sink_keys}


def output_value(
    output: dict[str, Any] | None, blob_key: str | None, sha256: str | None
) -> dict[str, Any] | None:
    """A step's output as passed on: inline, or the marker of its stored blob."""
    if blob_key is not None and sha256 is not None:
        return blobs.marker(blob_key, sha256)
    return output
