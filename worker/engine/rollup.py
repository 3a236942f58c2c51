"""Pure decisions about a run as a whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def run_outputs(
    outputs: Mapping[str, dict[str, Any] | None], sink_keys: list[str]
) -> dict[str, Any]:
    """A finished run's outputs: the outputs of its sink steps, by step key."""
    return {key: outputs.get(key) for key in sink_keys}
