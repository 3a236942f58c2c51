"""StepContext: what a step function gets as ``ctx``.

``ctx.inputs`` and ``ctx.resume_state`` (the last checkpoint, from any attempt);
``ctx.cost(...)`` and ``ctx.message(...)`` record spend and conversation, committed with
the next ``ctx.checkpoint(state)`` or with the step's completion, in one fenced
transaction; ``ctx.cancelled`` turns True when the run is cancelled; ``ctx.log`` is bound
to the run, step and attempt.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from db.session import run_transaction
from db.types import utcnow
from worker.engine.base import CostEntry, MessageEntry, Records
from worker.engine.claim import ClaimedStep
from worker.engine.progress import record_checkpoint
from worker.errors import DefinitionError, RunCancelled, StaleAttempt, StepTimeout
from worker.logs import BoundLogger
from worker.serialization import encode_checked

if TYPE_CHECKING:
    from worker.runtime import Runtime

ROLES = frozenset({"system", "user", "assistant", "tool"})


class StepContext:
    """The handle a step function uses to talk to cairn during one attempt."""

    def __init__(self, runtime: Runtime, claimed: ClaimedStep) -> None:
        self._runtime = runtime
        self._claimed = claimed
        self._lock = threading.Lock()
        self._records = Records()
        self._cost_seq = 0
        self._message_seq = 0
        self._checkpoint_seq = claimed.last_checkpoint_seq
        self._cancelled = False
        self._lost = False
        self._timed_out = False
        fence = claimed.fence
        self.log = BoundLogger(
            logging.getLogger("cairn.step"),
            {
                "run_id": fence.run_id,
                "step_id": fence.step_id,
                "key": claimed.key,
                "attempt": fence.attempt,
            },
        )

    # --- what the step reads ------------------------------------------------------
    @property
    def inputs(self) -> dict[str, Any]:
        """The run's inputs plus the outputs of upstream steps, by step key."""
        return self._claimed.inputs

    @property
    def resume_state(self) -> dict[str, Any] | None:
        """The state of the last checkpoint of this step (any attempt), or None."""
        return self._claimed.resume_state

    @property
    def run_id(self) -> str:
        """The run's id."""
        return str(self._claimed.fence.run_id)

    @property
    def step_key(self) -> str:
        """This step's key in its workflow."""
        return self._claimed.key

    @property
    def attempt(self) -> int:
        """This attempt's number, from 1."""
        return self._claimed.fence.attempt

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled or failed: end the step soon."""
        return self._cancelled

    # --- what the step records ----------------------------------------------------
    def cost(
        self,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        usd: Decimal | str | float | int = 0,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Record money and tokens spent; committed with the next checkpoint or completion."""
        if input_tokens < 0 or output_tokens < 0:
            raise DefinitionError("cost.tokens", "token counts cannot be negative")
        try:
            amount = Decimal(str(usd))
        except InvalidOperation:
            raise DefinitionError("cost.usd", f"{usd!r} is not a number") from None
        if not amount.is_finite() or amount < 0:
            raise DefinitionError("cost.usd", "must be a finite, non-negative amount")
        if meta is not None:
            self._check(meta, "cost.meta")
        with self._lock:
            self._cost_seq += 1
            self._records.costs.append(
                CostEntry(
                    self._cost_seq, provider, model, input_tokens, output_tokens, amount, meta
                )
            )

    def message(self, role: str, content: str, tool_calls: list[Any] | None = None) -> None:
        """Record a conversation message; committed like a cost."""
        if role not in ROLES:
            raise DefinitionError("message.role", f"must be one of {sorted(ROLES)}")
        self._check(content, "message.content")
        if tool_calls is not None:
            self._check(tool_calls, "message.tool_calls")
        with self._lock:
            self._message_seq += 1
            self._records.messages.append(
                MessageEntry(self._message_seq, role, content, tool_calls)
            )

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Commit ``state`` with the costs and messages recorded since the last checkpoint.

        One fenced transaction: if this attempt lost its lease, nothing is written and
        :class:`StaleAttempt` is raised. If the run was cancelled, the checkpoint is kept
        and :class:`RunCancelled` is raised so the step ends.
        """
        self.raise_if_stopped()
        if not isinstance(state, dict):
            raise DefinitionError("checkpoint", "state must be a JSON object")
        self._check(state, "checkpoint")
        settings = self._runtime.settings
        seq = self._checkpoint_seq + 1
        records = self.pending_records()
        fence = self._claimed.fence
        cancel = run_transaction(
            self._runtime.engine,
            lambda session: record_checkpoint(
                session, fence, seq, state, records, settings.lease_s, utcnow()
            ),
        )
        self._checkpoint_seq = seq
        self.clear_records(records)
        if cancel:
            self._cancelled = True
        self.raise_if_stopped()

    def raise_if_stopped(self) -> None:
        """Raise if this attempt must end: cancelled, lost its lease, or over its timeout."""
        if self._lost:
            raise StaleAttempt(f"step {self.step_key} attempt {self.attempt} lost its lease")
        if self._timed_out:
            raise StepTimeout(f"step {self.step_key} ran over its timeout_s")
        if self._cancelled:
            raise RunCancelled(f"run {self.run_id} was cancelled")

    # --- for the runner and the heartbeat ------------------------------------------
    def pending_records(self) -> Records:
        """A copy of the costs and messages not committed yet."""
        with self._lock:
            return Records(list(self._records.costs), list(self._records.messages))

    def clear_records(self, committed: Records) -> None:
        """Forget the records that were just committed."""
        with self._lock:
            self._records.costs = self._records.costs[len(committed.costs) :]
            self._records.messages = self._records.messages[len(committed.messages) :]

    def mark_cancelled(self) -> None:
        """The heartbeat saw the run cancelled."""
        self._cancelled = True

    def mark_lost(self) -> None:
        """The heartbeat saw the lease taken over."""
        self._lost = True

    def mark_timed_out(self) -> None:
        """The attempt ran past its timeout."""
        self._timed_out = True

    def _check(self, value: Any, field: str) -> None:
        settings = self._runtime.settings
        encode_checked(
            value, field, max_depth=settings.max_json_depth, limit_bytes=settings.inline_limit_bytes
        )
