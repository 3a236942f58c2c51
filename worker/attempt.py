"""The bookkeeping of one running attempt, shared by the runner, the heartbeat and the
step's :class:`~worker.context.StepContext` (which shows the step only the user's API).

It holds what the attempt recorded and has not committed yet (costs, messages, artifact
rows), the sequence numbers of those records and of checkpoints, and the flags the
heartbeat raises: the run was cancelled, the lease was lost, the timeout passed.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from worker.artifacts import object_key
from worker.errors import RunCancelled, StaleAttempt, StepTimeout
from worker.logs import BoundLogger
from worker.machine.claim import ClaimedStep
from worker.machine.records import ArtifactEntry, CostEntry, MessageEntry, Records

if TYPE_CHECKING:
    from worker.runtime import Runtime


class Attempt:
    """One claimed attempt's state while it runs (thread-safe: the heartbeat writes too)."""

    def __init__(self, runtime: Runtime, claimed: ClaimedStep) -> None:
        self.runtime = runtime
        self.claimed = claimed
        self.resume_state = claimed.resume_state
        self.checkpoint_seq = claimed.last_checkpoint_seq
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
        """Forget the records that were just committed."""
        with self._lock:
            r = self._records
            r.costs = r.costs[len(committed.costs) :]
            r.messages = r.messages[len(committed.messages) :]
            r.artifacts = r.artifacts[len(committed.artifacts) :]

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
