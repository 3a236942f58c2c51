"""StepContext: what a step function gets as ``ctx``.

``ctx.inputs`` and ``ctx.resume_state`` (the last checkpoint, from any attempt);
``ctx.cost(...)`` and ``ctx.message(...)`` record spend and conversation, committed with
the next ``ctx.checkpoint(state)`` or with the step's completion, in one fenced
transaction; ``ctx.cancelled`` turns True when the run is cancelled; ``ctx.log`` is bound
to the run, step and attempt.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any

from db.models import Artifact
from db.repositories import ArtifactRepository
from db.session import run_transaction
from db.types import utcnow
from worker import blobs, limits
from worker.artifacts import Source, object_key, validate_name
from worker.attempt import Attempt
from worker.definitions.spec import ApprovalGate
from worker.errors import (
    ApprovalExpired,
    ApprovalRejected,
    ChildRunFailed,
    DefinitionError,
    SignalTimeout,
    StepSuspended,
)
from worker.ids import parse_id
from worker.machine.progress import record_checkpoint, verify_checkpoint
from worker.machine.records import ArtifactEntry
from worker.machine.start import gate_columns
from worker.serialization import encode_checked

ROLES = frozenset({"system", "user", "assistant", "tool"})
#: The longest sleep or wait timeout: 366 days.
MAX_WAIT_S = 366 * 86400.0


@dataclass(frozen=True)
class Approval:
    """An approval a step waited for, as decided."""

    approval_id: str
    #: Who approved: a person, or ``cairn (on_timeout=approve)``.
    by: str | None
    comment: str | None
    decided_at: str

    @classmethod
    def of(cls, result: dict[str, Any], title: str) -> Approval:
        """The decision recorded for a wait; raises if it was not an approval."""
        status = result.get("status")
        who = f" by {result['by']}" if result.get("by") else ""
        note = f": {result['comment']}" if result.get("comment") else ""
        if status == "rejected":
            raise ApprovalRejected(f"{title!r} was rejected{who}{note}")
        if status != "approved":
            raise ApprovalExpired(f"nobody decided {title!r} in time")
        return cls(
            str(result.get("approval_id")),
            result.get("by"),
            result.get("comment"),
            str(result.get("decided_at")),
        )


class StepContext:
    """The handle a step function uses to talk to cairn during one attempt.

    It shows what a step may do and nothing of the runner's bookkeeping, which lives in
    :class:`~worker.attempt.Attempt`.
    """

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self._runtime = attempt.runtime
        self._claimed = attempt.claimed
        #: A logger bound to the run, step and attempt.
        self.log = attempt.log

    # --- what the step reads ------------------------------------------------------
    @property
    def inputs(self) -> dict[str, Any]:
        """The run's inputs plus the outputs of upstream steps, by step key."""
        return self._claimed.inputs

    @property
    def resume_state(self) -> dict[str, Any] | None:
        """The state of the last checkpoint of this step (any attempt), or None."""
        return self._attempt.resume_state

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
        return self._attempt.cancelled

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
        self._attempt.add_cost((provider, model, input_tokens, output_tokens, amount, meta))

    def message(self, role: str, content: str, tool_calls: list[Any] | None = None) -> None:
        """Record a conversation message; committed like a cost."""
        if role not in ROLES:
            raise DefinitionError("message.role", f"must be one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise DefinitionError("message.content", "must be a string")
        self._check(content, "message.content")
        if tool_calls is not None:
            self._check(tool_calls, "message.tool_calls")
        self._attempt.add_message(role, content, tool_calls)

    @property
    def artifacts(self) -> StepArtifacts:
        """Put files of this step, and read this run's committed artifacts."""
        return StepArtifacts(self._attempt)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Commit ``state`` with the costs and messages recorded since the last checkpoint.

        One fenced transaction: if this attempt lost its lease, nothing is written and
        :class:`StaleAttempt` is raised. If the run was cancelled, the checkpoint is kept
        and :class:`RunCancelled` is raised so the step ends. If the run is paused (its
        spend crossed a budget), the checkpoint is kept and the attempt ends waiting: the
        step resumes from this checkpoint once a new budget is approved.
        """
        attempt = self._attempt
        attempt.raise_if_stopped()
        if not isinstance(state, dict):
            raise DefinitionError("checkpoint", "state must be a JSON object")
        settings = self._runtime.settings
        seq = attempt.checkpoint_seq + 1
        _, data = blobs.encode(
            state,
            "checkpoint",
            max_depth=settings.max_json_depth,
            limit=settings.inline_limit_bytes,
        )
        stored: dict[str, Any] | blobs.BlobRef = state
        if data is not None:
            key = attempt.blob_key(f"checkpoint-{seq}.json")
            stored = blobs.offload(self._runtime.step_store, key, data)
        records = attempt.pending_records()
        fence = self._claimed.fence
        told = run_transaction(
            self._runtime.engine,
            lambda session: record_checkpoint(
                session, fence, seq, stored, records, settings.lease_s, utcnow()
            ),
            verify=lambda session: verify_checkpoint(session, fence, seq),
            retry_for_s=settings.server_retry_s,
        )
        attempt.checkpoint_seq = seq
        attempt.clear_records(records)
        if told.waiting:
            attempt.log.info(
                "step waiting: its run is paused for a new budget; it resumes from checkpoint %d",
                seq,
                extra={"action": "wait_step", "kind": "budget"},
            )
            raise StepSuspended("budget")
        if told.cancel:
            attempt.cancelled = True
        attempt.raise_if_stopped()

    # --- waiting without a worker --------------------------------------------------
    def wait_for_approval(
        self,
        title: str,
        details: dict[str, Any] | None = None,
        timeout: float | None = None,
        on_timeout: str = "fail",
        *,
        group: str | None = None,
        escalate_to: str | None = None,
    ) -> Approval:
        """Ask a person to approve; the step's attempt ends and its worker is freed.

        The step runs again (from the top, or its checkpoint) once someone decides, and
        this call then returns the decision at once. Rejected: raises
        :class:`ApprovalRejected`; nobody decided in ``timeout`` seconds: ``on_timeout``
        (``fail`` raises :class:`ApprovalExpired`, ``approve`` approves, ``escalate``
        asks the ``escalate_to`` group, once). Checkpoint before it what must not be
        done twice: the code before a wait runs again when the step resumes.
        """
        gate = ApprovalGate.model_validate(
            {
                "title": title,
                "details": details,
                "timeout_s": None if timeout is None else float(timeout),
                "on_timeout": on_timeout,
                "group": group,
                "escalate_to": escalate_to,
            }
        )
        if details is not None:
            self._check(details, "approval.details")
        return Approval.of(self._attempt.wait_for_approval(gate_columns(gate)), title)

    def wait_for_signal(self, name: str, timeout: float | None = None) -> Any:
        """Wait for the signal ``name`` sent to this run (``Client.signal``) and return its
        JSON payload. A signal sent before the wait is kept for it; each signal is
        delivered once. No signal in ``timeout`` seconds: :class:`SignalTimeout`."""
        limits.check_text("signal name", name, limits.SIGNAL_NAME_MAX)
        result = self._attempt.wait_for_signal(name, _seconds("timeout", timeout))
        if result.get("timed_out"):
            raise SignalTimeout(f"no signal {name!r} came within {timeout:g} s")
        return result.get("payload")

    def start_child(
        self, workflow: str | dict[str, Any], inputs: dict[str, Any] | None = None, *, key: str
    ) -> str:
        """Start a child run of ``workflow`` (a registered name, or a definition) and
        return its id; its first steps run at once, on any worker.

        ``key`` names the child among this step's: a step that runs again (a crash, a
        wait resumed, a retry) gets the child it started, never a second one. The child
        is cancelled if this run fails or is cancelled.
        """
        if inputs is not None and not isinstance(inputs, dict):
            raise DefinitionError("inputs", "must be a JSON object")
        return str(self._attempt.start_child(workflow, inputs or {}, key))

    def wait_child(self, child: str | uuid.UUID) -> dict[str, Any]:
        """Wait for a child run to end and return its outputs (by sink step key); the
        worker is freed while it runs. A child that failed or was cancelled raises
        :class:`ChildRunFailed` (retryable: the step's retry policy decides, and its next
        attempt re-opens the child from its failed steps)."""
        child_id = parse_id(child, "child")
        result = self._attempt.wait_child(child_id)
        if result.get("status") != "succeeded":
            error = result.get("error") or {}
            raise ChildRunFailed(
                f"child run {child_id} {result.get('status')}: "
                f"{error.get('type', 'error')}: {error.get('message', '')}".rstrip(": "),
                str(child_id),
            )
        store = self._runtime.step_store
        return {k: blobs.resolve(store, v) for k, v in (result.get("outputs") or {}).items()}

    def sleep(self, seconds: float) -> None:
        """Sleep durably: the worker is freed and the step resumes after ``seconds``,
        whatever restarts in between."""
        length = _seconds("seconds", seconds)
        assert length is not None
        self._attempt.sleep(length)

    def rate_limit(self, name: str, tokens: int = 0) -> float:
        """Wait until the named rate limit (``CAIRN_RATE_LIMITS``) admits one request and
        ``tokens`` tokens, across every worker; return the seconds waited. Call it before
        each call to the API it limits."""
        limits.check_int("tokens", tokens, 0, limits.TOKENS_MAX)
        return self._attempt.rate_limit(name, tokens)

    @property
    def budget_left(self) -> Decimal | None:
        """Money left before the run pauses (the least of its budget and its tenant's
        daily and monthly limits, less what this attempt recorded and did not commit
        yet); None when no budget applies."""
        return self._attempt.budget_left()

    def raise_if_stopped(self) -> None:
        """Raise if this attempt must end (cancelled, lease lost, over its timeout): a
        step in a long loop calls it between units of work."""
        self._attempt.raise_if_stopped()

    def _check(self, value: Any, field: str) -> None:
        settings = self._runtime.settings
        encode_checked(
            value, field, max_depth=settings.max_json_depth, limit_bytes=settings.inline_limit_bytes
        )


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(name, f"must be a number of seconds, not {type(value).__name__}")
    if not 0 <= value <= MAX_WAIT_S:
        raise DefinitionError(name, f"must be between 0 and {MAX_WAIT_S:g} seconds (366 days)")
    return float(value)


class StepArtifacts:
    """``ctx.artifacts``: files a step produces and reads, tied to the step that made them.

    ``put`` streams the content to the store at once; the artifact's row is written with
    the step's next checkpoint or its completion, fenced like every other record. An
    attempt that never commits leaves an orphan object (no row), which retention deletes.
    """

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self._runtime, self._claimed = attempt.runtime, attempt.claimed

    def put(self, name: str, source: Source, content_type: str | None = None) -> str:
        """Store ``source`` (bytes, a path or a binary file object) as ``name``; its key."""
        if content_type is not None:
            limits.check_text("artifact.content_type", content_type, limits.CONTENT_TYPE_MAX)
        c = self._claimed
        key = object_key(c.tenant_id, c.fence.run_id, c.key, c.fence.attempt, name)
        stored = self._runtime.step_store.put(key, source, content_type)
        self._attempt.add_artifact(
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
