"""The bookkeeping of one running attempt, shared by the runner, the heartbeat and the
step's :class:`~worker.context.StepContext` (which shows the step only the user's API).

It holds what the attempt recorded and has not committed yet (costs, messages, artifact
rows), the sequence numbers of those records and of checkpoints, and the flags the
heartbeat raises: the run was cancelled, the lease was lost, the timeout passed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from db.session import run_transaction
from db.states import WaitKind
from db.types import utcnow
from db.views import money
from worker import metrics
from worker.artifacts import object_key
from worker.errors import RunCancelled, StaleAttempt, StepSuspended, StepTimeout
from worker.logs import BoundLogger
from worker.machine.budgets import budget_left
from worker.machine.children import start_child
from worker.machine.claim import ClaimedStep
from worker.machine.records import ArtifactEntry, CostEntry, MessageEntry, Records
from worker.machine.start import StartedRun
from worker.machine.waits import (
    WaitRequest,
    begin_wait,
    verify_budget_wait,
    verify_wait,
    wait_for_budget,
)

if TYPE_CHECKING:
    from worker.runtime import Runtime


class Attempt:
    """One claimed attempt's state while it runs (thread-safe: the heartbeat writes too)."""

    def __init__(self, runtime: Runtime, claimed: ClaimedStep) -> None:
        self.runtime = runtime
        self.claimed = claimed
        self.resume_state = claimed.resume_state
        self.checkpoint_seq = claimed.last_checkpoint_seq
        #: Wait calls made by this attempt: call n replays the step's wait ``seq`` n.
        self.wait_seq = 0
        self._lock = threading.Lock()
        self._records = Records()
        self._cost_seq = 0
        self._message_seq = 0
        self.cancelled = False
        self.lost = False
        self.timed_out = False
        fence = claimed.fence
        #: Bound to the run, step and attempt; the step's ``ctx.log`` is this logger.
        self.log = BoundLogger(
            logging.getLogger("cairn.step"),
            {
                "run_id": fence.run_id,
                "step_id": fence.step_id,
                "key": claimed.key,
                "attempt": fence.attempt,
            },
        )

    def add_cost(self, entry: Any) -> None:
        """Queue a cost (a :class:`CostEntry` without its sequence number yet)."""
        with self._lock:
            self._cost_seq += 1
            self._records.costs.append(CostEntry(self._cost_seq, *entry))

    def add_message(self, role: str, content: str, tool_calls: list[Any] | None) -> None:
        """Queue a conversation message."""
        with self._lock:
            self._message_seq += 1
            self._records.messages.append(
                MessageEntry(self._message_seq, role, content, tool_calls)
            )

    def add_artifact(self, entry: ArtifactEntry) -> None:
        """Record an uploaded object; its row is written with the next commit."""
        with self._lock:
            self._records.artifacts.append(entry)

    def pending_records(self) -> Records:
        """A copy of the costs, messages and artifacts not committed yet."""
        with self._lock:
            r = self._records
            return Records(list(r.costs), list(r.messages), list(r.artifacts))

    def clear_records(self, committed: Records) -> None:
        """Forget the records that were just committed (their costs are counted)."""
        metrics.spent(committed.costs)
        with self._lock:
            r = self._records
            r.costs = r.costs[len(committed.costs) :]
            r.messages = r.messages[len(committed.messages) :]
            r.artifacts = r.artifacts[len(committed.artifacts) :]

    # --- waits -----------------------------------------------------------------------
    def wait_for_approval(self, ask: dict[str, Any]) -> dict[str, Any]:
        """The decision recorded for this wait call, or end the attempt waiting for it."""
        timeout = ask.get("timeout_s")
        return self._wait(WaitKind.APPROVAL, timeout=timeout, approval=ask)

    def wait_for_signal(self, name: str, timeout: float | None) -> dict[str, Any]:
        """The signal delivered to this wait call, or end the attempt waiting for it."""
        return self._wait(WaitKind.SIGNAL, name=name, timeout=timeout)

    def wait_child(self, child_run_id: uuid.UUID) -> dict[str, Any]:
        """The end of a child run (status, outputs, error), or end the attempt until then."""
        return self._wait(WaitKind.CHILD, name=str(child_run_id), child_run_id=child_run_id)

    def start_child(
        self, workflow: str | dict[str, Any], inputs: dict[str, Any], key: str
    ) -> uuid.UUID:
        """Start (or find) the step's child run ``key``; its first steps are sent."""
        self.raise_if_stopped()
        runtime, fence = self.runtime, self.claimed.fence
        names = runtime.registry.names() or None

        def work(session: Any) -> StartedRun:
            return start_child(
                session, fence, runtime.settings, names, workflow, inputs, key, utcnow()
            )

        # Idempotent per (step, key): a commit whose outcome was lost is found by doing
        # the same again.
        started = run_transaction(
            runtime.engine, work, verify=work, retry_for_s=runtime.settings.server_retry_s
        )
        runtime.dispatcher.send(started.messages)
        if started.created:
            self.log.info(
                "child run %s started (%s)",
                started.run_id,
                key,
                extra={"action": "start_child", "child_run_id": started.run_id},
            )
        return started.run_id

    def sleep(self, seconds: float) -> dict[str, Any]:
        """Return once the sleep of this wait call is over; end the attempt until then."""
        return self._wait(WaitKind.SLEEP, timeout=seconds)

    def _wait(
        self,
        kind: WaitKind,
        *,
        name: str | None = None,
        timeout: float | None = None,
        approval: dict[str, Any] | None = None,
        child_run_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        self.raise_if_stopped()
        self.wait_seq += 1
        seq, now = self.wait_seq, utcnow()
        request = WaitRequest(
            seq=seq,
            kind=kind,
            name=name,
            wake_at=now + timedelta(seconds=timeout) if timeout is not None else None,
            approval=approval,
            child_run_id=child_run_id,
        )
        records = self.pending_records()
        fence, key = self.claimed.fence, self.claimed.key
        outcome = run_transaction(
            self.runtime.engine,
            lambda session: begin_wait(session, fence, key, request, records, utcnow()),
            verify=lambda session: verify_wait(session, fence, seq),
            retry_for_s=self.runtime.settings.server_retry_s,
        )
        if outcome.result is not None:
            return outcome.result
        self.clear_records(records)
        self.runtime.dispatcher.send(outcome.woken)
        what = f"{kind} {name!r}" if name else str(kind)
        self.log.info(
            "step waiting for %s; its worker is free",
            what,
            extra={"action": "wait_step", "seq": request.seq, "approval_id": outcome.approval_id},
        )
        raise StepSuspended(what)

    def wait_for_budget(self) -> None:
        """End the attempt waiting for its paused run's new budget (raises
        :class:`StepSuspended`); return if the run is no longer paused."""
        records = self.pending_records()
        fence = self.claimed.fence
        waiting = run_transaction(
            self.runtime.engine,
            lambda session: wait_for_budget(session, fence, records, utcnow()),
            verify=lambda session: verify_budget_wait(session, fence),
            retry_for_s=self.runtime.settings.server_retry_s,
        )
        if not waiting:
            return
        self.clear_records(records)
        self.log.info(
            "step waiting: its run is paused for a new budget; its worker is free",
            extra={"action": "wait_step", "kind": "budget"},
        )
        raise StepSuspended("budget")

    def budget_left(self) -> Decimal | None:
        """Money left under the run's budgets, less costs recorded and not committed yet."""
        run_id = self.claimed.fence.run_id
        left = run_transaction(
            self.runtime.engine,
            lambda session: budget_left(session, run_id, utcnow()),
            retry_for_s=self.runtime.settings.server_retry_s,
        )
        return None if left is None else money(left - self.pending_records().usd())

    def rate_limit(self, name: str, tokens: int = 0) -> float:
        """Block until the named limit admits one request and ``tokens``; seconds waited.
        The wait stops (raising) if the run is cancelled, the lease lost or time is up."""
        waited = self.runtime.rate_limiter.acquire(name, tokens, check=self.raise_if_stopped)
        metrics.rate_limited(name, waited)
        if waited > 0.05:
            self.log.info(
                "waited %.2f s for rate limit %s",
                waited,
                name,
                extra={"action": "rate_limit", "limit": name},
            )
        return waited

    def blob_key(self, name: str) -> str:
        """The object key of a value this attempt stores (outputs, checkpoint states)."""
        c = self.claimed
        return object_key(c.tenant_id, c.fence.run_id, c.key, c.fence.attempt, f"_cairn/{name}")

    def raise_if_stopped(self) -> None:
        """Raise if this attempt must end: lease lost, over its timeout, or run cancelled."""
        c = self.claimed
        if self.lost:
            raise StaleAttempt(f"step {c.key} attempt {c.fence.attempt} lost its lease")
        if self.timed_out:
            raise StepTimeout(f"step {c.key} ran over its timeout_s")
        if self.cancelled:
            raise RunCancelled(f"run {c.fence.run_id} was cancelled")
