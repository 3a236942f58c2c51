"""Pure decisions about a run as a whole."""

from __future__ import annotations

from typing import Any

from worker import blobs


def output_value(
    output: dict[str, Any] | None, blob_key: str | None, sha256: str | None
) -> dict[str, Any] | None:
    """A step's output as passed on: inline, or the marker of its stored blob."""
    if blob_key is not None and sha256 is not None:
        return blobs.marker(blob_key, sha256)
    return output
