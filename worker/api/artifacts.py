"""Artifacts of a run: list, download (streamed, sha256-checked) and presigned URLs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from db.models import Artifact
from db.repositories import ArtifactRepository, RunRepository
from db.views import ArtifactView
from worker.api.bodies import PresignedUrl, StrictJsonRoute
from worker.api.state import ApiState, Caller, State
from worker.errors import ArtifactIntegrityError

router = APIRouter(
    prefix="/v1/runs/{run_id}/artifacts", tags=["artifacts"], route_class=StrictJsonRoute
)

_CHUNK = 256 * 1024
Step = Annotated[
    str | None, Query(max_length=200, description="The step, when several made `name`")
]


@router.get("")
async def list_artifacts(run_id: uuid.UUID, state: State, caller: Caller) -> list[ArtifactView]:
    """The run's artifacts, oldest first."""

    def work(session: Session) -> list[ArtifactView]:
        RunRepository(session, caller.tenant_id).get(run_id)
        return ArtifactRepository(session, caller.tenant_id).views(run_id)

    return await state.read(work)


@router.get(
    "/{name:path}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download(
    run_id: uuid.UUID, name: str, state: State, caller: Caller, step: Step = None
) -> StreamingResponse:
    """The artifact's bytes, streamed; ``X-Content-SHA256`` carries the sha256 to check.

    The bytes are hashed as they stream: an object changed in the store since it was
    recorded breaks the download off instead of completing it.
    """
    row = await _stored(state, caller.tenant_id, run_id, name, step)
    stream = await run_in_threadpool(state.store.open, row.key)
    filename = quote(name.rsplit("/", 1)[-1])
    return StreamingResponse(
        _verified(stream, row),
        media_type=row.content_type or "application/octet-stream",
        headers={
            "Content-Length": str(row.size),
            "X-Content-SHA256": row.sha256,
            "ETag": f'"{row.sha256}"',
            "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
        },
    )


@router.get("/{name:path}/url")
async def presigned_url(
    run_id: uuid.UUID,
    name: str,
    state: State,
    caller: Caller,
    step: Step = None,
    expires_s: Annotated[int, Query(ge=1, le=7 * 24 * 3600)] = 3600,
) -> PresignedUrl:
    """A time-limited GET URL of the artifact (S3 backend; 409 with the local folder)."""
    row = await _stored(state, caller.tenant_id, run_id, name, step)
    url = await run_in_threadpool(state.store.presigned_url, row.key, expires_s)
    return PresignedUrl(url, expires_s)


async def _stored(
    state: ApiState, tenant_id: uuid.UUID, run_id: uuid.UUID, name: str, step: str | None
) -> Artifact:
    def work(session: Session) -> Artifact:
        RunRepository(session, tenant_id).get(run_id)
        return ArtifactRepository(session, tenant_id).stored(run_id, name, step)

    return await state.read(work)


def _verified(stream: BinaryIO, row: Artifact) -> Iterator[bytes]:
    """The object's chunks; raises at the end (aborting the response) on a wrong sha256."""
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            yield chunk
    finally:
        stream.close()
    if digest.hexdigest() != row.sha256 or size != row.size:
        raise ArtifactIntegrityError(
            f"object {row.key} does not match its record ({size} bytes, sha256 "
            f"{digest.hexdigest()[:16]}...): it was changed after it was stored"
        )
