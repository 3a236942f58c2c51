"""Large JSON values (outputs, checkpoint states) live in the artifact store.

A value whose canonical JSON is over the inline limit is uploaded, and the row keeps a
marker ``{"$blob": key, "sha256": ..., "size": ...}``. Reading it back verifies the
sha256, so a tampered or truncated object fails clearly instead of feeding bad data on.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.serialization import check_json, dumps

if TYPE_CHECKING:
    from db.models import WorkflowStep
    from db.views import RunView
    from worker.artifacts import ArtifactStore

MARKER = "$blob"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where a large value was stored, and how to check it."""

    key: str
    sha256: str
    size: int

    def marker(self) -> dict[str, Any]:
        """The JSON that stands for the value in rows and inputs."""
        return marker(self.key, self.sha256, self.size)


def marker(key: str, sha256: str, size: int | None = None) -> dict[str, Any]:
    """The one constructor of the stand-in of a stored value: ``{"$blob": key, ...}``."""
    found: dict[str, Any] = {MARKER: key, "sha256": sha256}
    if size is not None:
        found["size"] = size
    return found


def is_marker(value: Any) -> bool:
    """True for the stand-in of a stored value."""
    return isinstance(value, dict) and MARKER in value and "sha256" in value


def encode(
    value: dict[str, Any], field: str, *, max_depth: int, limit: int
) -> tuple[dict[str, Any] | None, bytes | None]:
    """Check ``value``; return it inline, or its JSON bytes when over ``limit``."""
    check_json(value, field, max_depth=max_depth)
    data = dumps(value).encode()
    return (value, None) if len(data) <= limit else (None, data)


def offload(store: ArtifactStore, key: str, data: bytes) -> BlobRef:
    """Upload ``data`` under ``key``."""
    stored = store.put(key, data, content_type="application/json")
    return BlobRef(stored.key, stored.sha256, stored.size)


def resolve(store: ArtifactStore, value: Any) -> Any:
    """The stored value behind a marker (sha256 verified), or ``value`` itself; a list
    (a map step's joined outputs) has each of its markers resolved."""
    if isinstance(value, list):
        return [resolve(store, item) if is_marker(item) else item for item in value]
    if not is_marker(value):
        return value
    data = store.get_bytes(value[MARKER], expected_sha256=value["sha256"])
    return json.loads(data)


def resolve_run(store: ArtifactStore, view: RunView, steps: Sequence[WorkflowStep]) -> RunView:
    """The run view with step outputs kept in the artifact store fetched and verified."""
    blobs_of = {
        s.key: marker(s.output_blob_key, s.output_sha256)
        for s in steps
        if s.output_blob_key and s.output_sha256
    }
    if not blobs_of:
        return view
    resolved = {k: resolve(store, m) for k, m in blobs_of.items()}
    new_steps = tuple(
        dataclasses.replace(s, output=resolved[s.key]) if s.key in resolved else s
        for s in view.steps
    )
    outputs = view.outputs and {
        k: resolved.get(k, v) if is_marker(v) else v for k, v in view.outputs.items()
    }
    return dataclasses.replace(view, steps=new_steps, outputs=outputs)
