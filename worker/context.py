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
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

from db.models import Artifact
from db.repositories import ArtifactRepository
from db.session import run_transaction
from db.types import utcnow
from worker import blobs, limits
from worker.artifacts import Source, object_key, validate_name
from worker.engine.claim import ClaimedStep
from worker.engine.progress import record_checkpoint, verify_checkpoint
from worker.engine.records import ArtifactEntry, CostEntry, MessageEntry, Records
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
        self._resume_state = claimed.resume_state
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
        return self._resume_state

    def set_resume_state(self, state: dict[str, Any] | None) -> None:
        """Set by the runner once a stored state was fetched and verified."""
        self._resume_state = state

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
        """Record money and tokens spent; committed with the next checkpoint or completion.

        What the database would refuse (a NUL in a name, a model name over its column, an
        amount past the money columns' precision) is refused here, naming the argument.
        """
        limits.check_text("cost.provider", provider, limits.COST_PROVIDER_MAX)
        limits.check_text("cost.model", model, limits.COST_MODEL_MAX)
        for name, tokens in (
            ("cost.input_tokens", input_tokens),
            ("cost.output_tokens", output_tokens),
        ):
            limits.check_int(name, tokens, 0, limits.TOKENS_MAX)
        amount = limits.check_money("cost.usd", usd)
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
        if not isinstance(content, str):
            raise DefinitionError("message.content", "must be a string")
        self._check(content, "message.content")
        if tool_calls is not None:
            self._check(tool_calls, "message.tool_calls")
        with self._lock:
            self._message_seq += 1
            self._records.messages.append(
                MessageEntry(self._message_seq, role, content, tool_calls)
            )

    @property
    def artifacts(self) -> StepArtifacts:
        """Put files of this step, and read this run's committed artifacts."""
        return StepArtifacts(self, self._runtime, self._claimed)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Commit ``state`` with the costs and messages recorded since the last checkpoint.

        One fenced transaction: if this attempt lost its lease, nothing is written and
        :class:`StaleAttempt` is raised. If the run was cancelled, the checkpoint is kept
        and :class:`RunCancelled` is raised so the step ends.
        """
        self.raise_if_stopped()
        if not isinstance(state, dict):
            raise DefinitionError("checkpoint", "state must be a JSON object")
        settings = self._runtime.settings
        seq = self._checkpoint_seq + 1
        _, data = blobs.encode(
            state,
            "checkpoint",
            max_depth=settings.max_json_depth,
            limit=settings.inline_limit_bytes,
        )
        stored: dict[str, Any] | blobs.BlobRef = state
        if data is not None:
            key = self.blob_key(f"checkpoint-{seq}.json")
            stored = blobs.offload(self._runtime.step_store, key, data)
        records = self.pending_records()
        fence = self._claimed.fence
        cancel = run_transaction(
            self._runtime.engine,
            lambda session: record_checkpoint(
                session, fence, seq, stored, records, settings.lease_s, utcnow()
            ),
            verify=lambda session: verify_checkpoint(session, fence, seq),
            retry_for_s=settings.server_retry_s,
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

    def add_artifact(self, entry: ArtifactEntry) -> None:
        """Record an uploaded object; its row is written with the next commit."""
        with self._lock:
            self._records.artifacts.append(entry)

    def blob_key(self, name: str) -> str:
        """The object key of a value this attempt stores (outputs, checkpoint states)."""
        c = self._claimed
        return object_key(c.tenant_id, c.fence.run_id, c.key, c.fence.attempt, f"_cairn/{name}")

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


class StepArtifacts:
    """``ctx.artifacts``: files a step produces and reads, tied to the step that made them.

    ``put`` streams the content to the store at once; the artifact's row is written with
    the step's next checkpoint or its completion, fenced like every other record. An
    attempt that never commits leaves an orphan object (no row), which retention deletes.
    """

    def __init__(self, ctx: StepContext, runtime: Runtime, claimed: ClaimedStep) -> None:
        self._ctx, self._runtime, self._claimed = ctx, runtime, claimed

    def put(self, name: str, source: Source, content_type: str | None = None) -> str:
        """Store ``source`` (bytes, a path or a binary file object) as ``name``; its key."""
        if content_type is not None:
            limits.check_text("artifact.content_type", content_type, limits.CONTENT_TYPE_MAX)
        c = self._claimed
        key = object_key(c.tenant_id, c.fence.run_id, c.key, c.fence.attempt, name)
        stored = self._runtime.step_store.put(key, source, content_type)
        self._ctx.add_artifact(
            ArtifactEntry(name, stored.key, stored.size, stored.sha256, content_type)
        )
        return stored.key

    def get(self, name: str, step: str | None = None) -> bytes:
        """The bytes of a committed artifact of this run (of step ``step``), verified."""
        row = self._row(name, step)
        return self._runtime.step_store.get_bytes(row.key, expected_sha256=row.sha256)

    def open(self, name: str, step: str | None = None) -> IO[bytes]:
        """A streaming reader of a committed artifact of this run."""
        return self._runtime.step_store.open(self._row(name, step).key)

    def _row(self, name: str, step: str | None) -> Artifact:
        validate_name(name)
        tenant_id, run_id = self._claimed.tenant_id, self._claimed.fence.run_id
        return run_transaction(
            self._runtime.engine,
            lambda session: ArtifactRepository(session, tenant_id).get(run_id, name, step_key=step),
            retry_for_s=self._runtime.settings.server_retry_s,
        )
