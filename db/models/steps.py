"""Workflow steps (the DAG's nodes) and the edges between them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, CreatedMixin, IdMixin
from db.states import StepStatus, check_in
from db.types import NullableJSON


def _status_is(status: StepStatus) -> str:
    return f"status = '{status.value}'"


def _partial(*columns: str, where: str) -> Index:
    """An index of the rows that match ``where`` (a query must state the same condition,
    with the status as a literal on SQLite: see ``transitions.status_is``)."""
    return Index(None, *columns, postgresql_where=text(where), sqlite_where=text(where))


class WorkflowStep(IdMixin, CreatedMixin, Base):
    """One node of a run's DAG, and the state of its current attempt.

    ``attempt`` is the fencing token: every write of an attempt carries it, and a write
    whose attempt (or lease owner) no longer matches the row is refused.
    """

    __tablename__ = "workflow_steps"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        CheckConstraint(check_in("status", StepStatus), name="status_valid"),
        CheckConstraint("attempt >= 0", name="attempt_non_negative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("server_releases >= 0", name="server_releases_non_negative"),
        CheckConstraint("wait_resumes >= 0", name="wait_resumes_non_negative"),
        CheckConstraint("pending_upstream >= 0", name="pending_upstream_non_negative"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority_range"),
        # Partial indexes: each holds only the rows its query looks for, so a step's change
        # of status writes the one index of its new status (if any), not all of them, and
        # finished steps (nearly every row) sit in none.
        # The reaper: running steps by lease expiry.
        _partial("lease_expires_at", where=_status_is(StepStatus.RUNNING)),
        # The reconciler: queued steps by dispatch time, retrying steps by backoff end.
        _partial("dispatched_at", where=_status_is(StepStatus.QUEUED)),
        _partial("next_attempt_at", where=_status_is(StepStatus.RETRYING)),
        # A map's slots: its elements by status, in order.
        _partial("map_parent_id", "status", "map_index", where="map_parent_id IS NOT NULL"),
        # A concurrency key's slots: its steps by status, oldest first.
        _partial("concurrency_key", "status", "queued_at", where="concurrency_key IS NOT NULL"),
    )

    #: Indexed by the unique (run_id, key).
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    #: The step's key inside its workflow (unique per run).
    key: Mapped[str] = mapped_column(String(200))
    #: The registered step function name.
    task: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING)
    attempt: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=1)
    #: Attempts that ended for a fault of cairn's servers (database, artifact store) and
    #: were released unspent: ``attempt - server_releases`` is what the retry policy counts.
    server_releases: Mapped[int] = mapped_column(default=0, server_default="0")
    #: Attempts that ended waiting (an approval, a signal, a sleep, a budget): the retry
    #: policy does not count them either.
    wait_resumes: Mapped[int] = mapped_column(default=0, server_default="0")
    #: The definition's ``approve`` gate: an approval asked before the step's code runs.
    approve: Mapped[dict[str, Any] | None]
    #: Upstream steps not yet succeeded; the join is queued by the update that makes it 0.
    pending_upstream: Mapped[int] = mapped_column(default=0)
    #: Retry policy and timeout, copied from the pinned definition.
    retry: Mapped[dict[str, Any]]
    timeout_s: Mapped[float | None]
    queue: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(default=5)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: Asked to stop (run cancelled or failed); the attempt sees it at its next heartbeat.
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    output: Mapped[dict[str, Any] | None]
    #: Set instead of ``output`` when the output was over the inline limit.
    output_blob_key: Mapped[str | None] = mapped_column(String(1024))
    output_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[dict[str, Any] | None]
    #: Inputs of this step only, over the run's inputs and its upstream outputs: a fork's
    #: ``step_inputs``, or a map element's ``item`` and ``index``.
    inputs: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    #: A fork's step reused from its parent run: the step whose output (and costs and
    #: artifacts) it is. Not a foreign key: the fork outlives its parent's purge.
    origin_step_id: Mapped[uuid.UUID | None]
    #: A map step (``map: {over, task, max_parallel}``): it succeeds when its elements have,
    #: with their outputs as a list, in order.
    map: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    #: A map element: its map step, and its place in the list.
    map_parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE")
    )
    map_index: Mapped[int | None]
    #: The step's concurrency key (its template rendered, under its tenant's id) and limit:
    #: at most ``concurrency_limit`` attempts with one key run at once.
    concurrency_key: Mapped[str | None] = mapped_column(String(300))
    concurrency_limit: Mapped[int | None]
    #: Named rate limits (``CAIRN_RATE_LIMITS``) the step takes one request from before
    #: its code runs.
    rate_limits: Mapped[list[str] | None] = mapped_column(NullableJSON)


class StepEdge(IdMixin, Base):
    """``upstream`` must succeed before ``downstream`` may run."""

    __tablename__ = "step_edges"
    __table_args__ = (UniqueConstraint("upstream_id", "downstream_id"),)

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="CASCADE"), index=True
    )
    #: Indexed by the unique (upstream_id, downstream_id).
    upstream_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE")
    )
    downstream_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_steps.id", ondelete="CASCADE"), index=True
    )
