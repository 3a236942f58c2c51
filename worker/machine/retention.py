"""Retention: ended runs past their time, artifacts of old runs, and orphan objects.

The database decides and records; the caller deletes the objects. An expired artifact's
object is deleted first and its row marked after, so a row never claims an object exists
when it does not (a crash in between leaves a row whose object is gone, marked on the
next pass).

A whole run goes the other way round: its rows are deleted in one transaction (the foreign
keys cascade from the run to every row it owns), and its objects after the commit. A row
never outlives its object; an object whose delete fails is an orphan the sweep removes.
Only ended runs are deleted, never one with a step still active, and leaf first: the
``parent_run_id`` key cascades, so a run is kept while a child run of it exists.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from db.models import Artifact, Checkpoint, WorkflowRun, WorkflowStep
from db.repositories import RunRepository
from db.session import run_transaction
from db.states import TERMINAL_RUN, StepStatus
from worker.artifacts import ArtifactStore
from worker.errors import CairnError, RunNotEnded
from worker.machine.events import add_event

log = logging.getLogger("cairn.retention")
#: Runs deleted per transaction: bounded locks, a bounded list of object keys.
RUN_BATCH = 100
#: Step statuses of an attempt that may still write (a cancelled run's step stops at
#: its next heartbeat): such a run is not deleted yet.
ACTIVE_STEPS = (StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.RETRYING)


@dataclass(frozen=True)
class DeletedRun:
    """A run whose rows were deleted, and the object keys those rows named."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    keys: tuple[str, ...]

    @property
    def prefix(self) -> str:
        """Where every object of the run lives in the store (see ``object_key``)."""
        return f"{self.tenant_id}/{self.run_id}/"


def _deletable() -> ColumnElement[bool]:
    """The guard of a run delete: ended, no step active, no child run, parent ended."""
    child, parent = aliased(WorkflowRun), aliased(WorkflowRun)
    return and_(
        WorkflowRun.status.in_(TERMINAL_RUN),
        ~exists().where(
            WorkflowStep.run_id == WorkflowRun.id, WorkflowStep.status.in_(ACTIVE_STEPS)
        ),
        ~exists().where(child.parent_run_id == WorkflowRun.id),
        ~exists().where(parent.id == WorkflowRun.parent_run_id, parent.status.not_in(TERMINAL_RUN)),
    )


def delete_ended_runs(
    session: Session,
    finished_before: datetime,
    *,
    tenant_id: uuid.UUID | None = None,
    limit: int = RUN_BATCH,
) -> list[DeletedRun]:
    """Delete up to ``limit`` runs that ended before ``finished_before``, oldest first,
    with every row they own; return them with the object keys to delete after commit.

    Rows are locked and skipped when locked, so two beats delete different batches.
    """
    query = (
        select(WorkflowRun.id)
        .where(WorkflowRun.finished_at < finished_before, _deletable())
        .order_by(WorkflowRun.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WorkflowRun)
    )
    if tenant_id is not None:
        query = query.where(WorkflowRun.tenant_id == tenant_id)
    ids = list(session.scalars(query))
    return _delete_runs(session, ids, WorkflowRun.finished_at < finished_before)


def delete_run(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> DeletedRun:
    """Delete the tenant's ended run with every row it owns.

    :class:`NotFound` if missing or foreign; :class:`RunNotEnded` (saying why) if it has
    not ended, a step of it is still active, or a run depends on it.
    """
    deleted = _delete_runs(session, [run_id], WorkflowRun.tenant_id == tenant_id)
    if deleted:
        return deleted[0]
    raise RunNotEnded(_why_kept(session, tenant_id, run_id))


def count_ended_runs(
    session: Session, finished_before: datetime, *, tenant_id: uuid.UUID | None = None
) -> int:
    """How many runs :func:`delete_ended_runs` would delete, batch after batch (its
    children first: a parent counts when its children are old and ended too)."""
    child = aliased(WorkflowRun)
    old = and_(WorkflowRun.finished_at < finished_before, WorkflowRun.status.in_(TERMINAL_RUN))
    kept_child = exists().where(
        child.parent_run_id == WorkflowRun.id,
        or_(
            child.status.not_in(TERMINAL_RUN),
            child.finished_at.is_(None),
            child.finished_at >= finished_before,
        ),
    )
    active = exists().where(
        WorkflowStep.run_id == WorkflowRun.id, WorkflowStep.status.in_(ACTIVE_STEPS)
    )
    parent = aliased(WorkflowRun)
    parent_going = exists().where(
        parent.id == WorkflowRun.parent_run_id, parent.status.not_in(TERMINAL_RUN)
    )
    query = (
        select(func.count())
        .select_from(WorkflowRun)
        .where(old, ~kept_child, ~active, ~parent_going)
    )
    if tenant_id is not None:
        query = query.where(WorkflowRun.tenant_id == tenant_id)
    return int(session.scalar(query) or 0)


def _delete_runs(
    session: Session, ids: list[uuid.UUID], guard: ColumnElement[bool]
) -> list[DeletedRun]:
    if not ids:
        return []
    keys = _object_keys(session, ids)
    deleted = session.execute(
        delete(WorkflowRun)
        .where(WorkflowRun.id.in_(ids), guard, _deletable())
        .returning(WorkflowRun.id, WorkflowRun.tenant_id)
    ).all()
    return [DeletedRun(rid, tid, tuple(sorted(keys.get(rid, ())))) for rid, tid in deleted]


def _object_keys(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    """The object keys the rows of ``run_ids`` name: artifacts, large outputs and states."""
    found: dict[uuid.UUID, set[str]] = defaultdict(set)
    queries = (
        select(Artifact.run_id, Artifact.key).where(
            Artifact.run_id.in_(run_ids), Artifact.deleted_at.is_(None)
        ),
        select(WorkflowStep.run_id, WorkflowStep.output_blob_key).where(
            WorkflowStep.run_id.in_(run_ids), WorkflowStep.output_blob_key.is_not(None)
        ),
        select(Checkpoint.run_id, Checkpoint.blob_key).where(
            Checkpoint.run_id.in_(run_ids), Checkpoint.blob_key.is_not(None)
        ),
    )
    for query in queries:
        for run_id, key in session.execute(query):
            if key:
                found[run_id].add(key)
    return found


def _why_kept(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> str:
    run = RunRepository(session, tenant_id).get(run_id)  # NotFound if missing or foreign
    if run.status not in TERMINAL_RUN:
        return f"run {run_id} is {run.status}, not ended; cancel it first (cairn cancel {run_id})"
    step = session.scalar(
        select(WorkflowStep.key).where(
            WorkflowStep.run_id == run_id, WorkflowStep.status.in_(ACTIVE_STEPS)
        )
    )
    if step is not None:
        return f"run {run_id} is {run.status} but its step {step!r} has not stopped yet; try again"
    child = session.scalar(select(WorkflowRun.id).where(WorkflowRun.parent_run_id == run_id))
    if child is not None:
        return f"run {run_id} has a child run {child}; delete that first"
    return f"run {run_id}'s parent run {run.parent_run_id} has not ended"


def delete_objects(store: ArtifactStore, runs: Iterable[DeletedRun]) -> int:
    """Delete the objects of deleted runs (call after the commit); return how many.

    Besides the keys the rows named, everything under each run's prefix goes (objects of
    attempts that never committed). When the store fails, the rest is left to the orphan
    sweep, which deletes objects no row points at.
    """
    deleted = 0
    for run in runs:
        try:
            for key in sorted(set(run.keys) | set(store.list_keys(run.prefix))):
                store.delete(key)
                deleted += 1
        except CairnError as exc:
            log.warning(
                "retention: objects of run %s left to the orphan sweep: %s",
                run.run_id,
                exc,
                extra={"action": "delete_run", "run_id": str(run.run_id)},
            )
            break
    return deleted


def purge_runs(
    engine: Engine,
    store: ArtifactStore,
    finished_before: datetime,
    *,
    tenant_id: uuid.UUID | None = None,
    max_batches: int | None = None,
) -> int:
    """Delete ended runs past ``finished_before`` batch by batch, one transaction each,
    and their objects after each commit; return how many runs were deleted."""
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        batches += 1
        runs = run_transaction(
            engine, lambda s: delete_ended_runs(s, finished_before, tenant_id=tenant_id)
        )
        delete_objects(store, runs)
        total += len(runs)
        if not runs:
            break
    return total


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
