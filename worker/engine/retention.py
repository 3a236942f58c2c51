"""Retention: artifacts of old runs, and orphan objects no row points at.

The database decides and records; the caller deletes the objects. An object is deleted
first and its row marked after, so a row never claims an object exists when it does not
(a crash in between leaves a row whose object is gone, marked on the next pass).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Artifact, Checkpoint, WorkflowRun, WorkflowStep
from worker.engine.base import add_event


def expired_artifacts(
    session: Session, finished_before: datetime, limit: int = 1000
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """(artifact id, run id, key) of live artifacts of runs that ended before the cutoff."""
    rows = session.execute(
        select(Artifact.id, Artifact.run_id, Artifact.key)
        .join(WorkflowRun, WorkflowRun.id == Artifact.run_id)
        .where(
            WorkflowRun.finished_at < finished_before,
            Artifact.deleted_at.is_(None),
        )
        .limit(limit)
    ).all()
    return [(a, r, k) for a, r, k in rows]


def mark_deleted(
    session: Session, deleted: list[tuple[uuid.UUID, uuid.UUID, str]], now: datetime
) -> None:
    """Record on the rows (and in each run's events) that their objects were deleted."""
    if not deleted:
        return
    session.execute(
        update(Artifact).where(Artifact.id.in_([a for a, _, _ in deleted])).values(deleted_at=now)
    )
    for run_id in {r for _, r, _ in deleted}:
        keys = [k for _, r, k in deleted if r == run_id]
        add_event(session, run_id, "expire_artifacts", now, data={"deleted": len(keys)})


def referenced(session: Session, keys: list[str]) -> set[str]:
    """The keys among ``keys`` that a row still points at."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        found |= set(session.scalars(select(Artifact.key).where(Artifact.key.in_(batch))))
        found |= set(
            session.scalars(
                select(WorkflowStep.output_blob_key).where(WorkflowStep.output_blob_key.in_(batch))
            )
        )
        found |= set(
            session.scalars(select(Checkpoint.blob_key).where(Checkpoint.blob_key.in_(batch)))
        )
    return found
