"""Run one attempt of one step: claim, execute with heartbeat and timeout, record, dispatch.

This is what the ``cairn.execute_step`` task calls; it knows nothing of Celery.
"""

from __future__ import annotations

import functools
import inspect
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from db.session import run_transaction
from db.states import RunStatus, StepStatus
from db.types import utcnow
from worker import blobs, metrics, tracing
from worker.attempt import Attempt
from worker.blobs import BlobRef
from worker.context import Approval, StepContext
from worker.errors import (
    DefinitionError,
    RunCancelled,
    ServerUnavailable,
    StaleAttempt,
    StepNotClaimable,
    StepSuspended,
    StepTimeout,
    error_record,
    error_types,
    is_retryable,
)
from worker.faults import server_fault
from worker.heartbeat import Heartbeat
from worker.ids import new_id
from worker.logs import attempt_context
from worker.machine.claim import ClaimedStep, Throttled, claim_step, verify_claim
from worker.machine.complete import Completion
from worker.machine.continuation import Continued, complete_and_continue, verify_continued
from worker.machine.fail import Ended, cancel_step, fail_step, release_step, verify_ended
from worker.machine.lease import Inline
from worker.machine.records import Records
from worker.machine.retry import RetryDecision, decide, decide_release
from worker.runtime import Runtime

log = logging.getLogger("cairn.runner")
#: A chain continues inline for at most this long in one task, then goes by the broker.
INLINE_BUDGET_S = 1.0


def execute_step(
    runtime: Runtime,
    step_id: uuid.UUID,
    attempt: int,
    queue: str | None = None,
    trace_headers: dict[str, str] | None = None,
) -> None:
    """Run ``attempt`` of step ``step_id`` if it is still claimable; drop the message if not.

    ``queue`` is the queue the message came from: a dependent on that queue that this
    completion alone released is run next in this process (inline continuation).
    ``trace_headers``: the sender's trace context, the parent of the attempt's span.
    """
    tracing.ensure_setup("cairn-worker")
    owner = _new_owner(runtime)
    try:
        found: ClaimedStep | Throttled | None = run_transaction(
            runtime.engine,
            lambda s: claim_step(s, step_id, attempt, owner, runtime.settings.lease_s, utcnow()),
            verify=lambda s: verify_claim(s, step_id, attempt, owner),
            retry_for_s=runtime.settings.server_retry_s,
        )
    except StepNotClaimable as exc:
        log.info(
            "message dropped: %s",
            exc,
            extra={"action": "drop_message", "step_id": step_id, "attempt": attempt},
        )
        return
    except ServerUnavailable as exc:
        # Nothing was claimed: the step stays queued and the reconciler sends it again.
        log.warning(
            "step not started, %s is unavailable: %s",
            exc.server,
            exc,
            extra={"action": "claim_step", "step_id": step_id, "attempt": attempt},
        )
        return
    if isinstance(found, Throttled):
        log.info(
            "step throttled: its concurrency key is at its limit; it runs when a slot frees",
            extra={"action": "throttle_step", "step_id": step_id, "attempt": attempt},
        )
        runtime.dispatcher.send(found.messages)
        return
    claimed = found
    # Past the budget, the next step goes through the broker like any other, so a
    # recovered step (sent first in its queue) never waits behind a long chain.
    deadline = time.monotonic() + INLINE_BUDGET_S
    while claimed is not None:
        claimed = _run_attempt(runtime, claimed, queue, deadline, trace_headers)
        trace_headers = None  # a step continued inline hangs off its run's context


def _new_owner(runtime: Runtime) -> str:
    return f"{runtime.owner_prefix}:{new_id().hex[-12:]}"


def _run_attempt(
    runtime: Runtime,
    claimed: ClaimedStep,
    queue: str | None,
    deadline: float,
    trace_headers: dict[str, str] | None = None,
) -> ClaimedStep | None:
    """Run one claimed attempt; the next step to run inline, if its completion claimed one."""
    att = Attempt(runtime, claimed)
    fence = claimed.fence
    with (
        attempt_context(
            run_id=fence.run_id, step_id=fence.step_id, key=claimed.key, attempt=fence.attempt
        ),
        tracing.attempt_span(
            claimed.key,
            trace_headers,
            claimed.trace_context,
            run_id=fence.run_id,
            step=claimed.key,
            attempt=fence.attempt,
            workflow=claimed.workflow,
            tenant_id=claimed.tenant_id,
        ),
    ):
        att.log.info("step started", extra={"action": "claim_step", "owner": fence.owner})
        waited = claimed.started_at - claimed.queued_at if claimed.queued_at else None
        metrics.claimed(
            claimed.workflow, claimed.key, None if waited is None else waited.total_seconds()
        )
        heartbeat = Heartbeat(
            runtime.engine, fence, att, runtime.settings.lease_s, claimed.timeout_s
        ).start()
        try:
            continued = _run_and_record(runtime, att, lambda: _inline(runtime, queue, deadline))
        finally:
            heartbeat.stop()
        runtime.dispatcher.send(continued.completion.messages)  # in the span: its children
    return continued.next


def _inline(runtime: Runtime, queue: str | None, deadline: float) -> Inline | None:
    """What this process may run next without the broker, decided as the step completes."""
    if queue is None or not runtime.settings.inline_continuation:
        return None
    if time.monotonic() >= deadline:
        return None
    tasks = runtime.registry.names()
    return Inline(queue, tasks, _new_owner(runtime), runtime.settings.lease_s)


def _run_and_record(
    runtime: Runtime, att: Attempt, inline_now: Callable[[], Inline | None]
) -> Continued:
    claimed = att.claimed
    fence = claimed.fence
    store = runtime.step_store
    try:
        fn = runtime.registry.get(claimed.task)
        inputs = {k: blobs.resolve(store, v) for k, v in claimed.inputs.items()}
        att.resume_state = blobs.resolve(store, claimed.resume_state)
        ctx = StepContext(att)
        if claimed.run_status == RunStatus.PAUSED:
            att.wait_for_budget()
        if claimed.approve:
            gate = claimed.approve
            Approval.of(att.wait_for_approval(gate), gate["title"])
        for name in claimed.rate_limits:
            att.rate_limit(name)
        with _time_limit(claimed.timeout_s):
            result = _call(fn, ctx, inputs)
        output = _store_output(runtime, att, result)
        records = att.pending_records()
        inline = inline_now()
        continued = run_transaction(
            runtime.engine,
            lambda s: complete_and_continue(
                s, fence, output, records, utcnow(), inline, try_alone=claimed.plain
            ),
            verify=lambda s: verify_continued(s, fence, inline),
            retry_for_s=runtime.settings.server_retry_s,
        )
    except StepSuspended:
        _ended(att, "waiting")
        return NOTHING  # committed: the step waits, holding no worker
    except StaleAttempt as exc:
        att.log.warning(
            "attempt superseded, nothing recorded: %s", exc, extra={"action": "lose_lease"}
        )
        _ended(att, "superseded")
        return NOTHING
    except RunCancelled:
        records = att.pending_records()
        _fenced(
            runtime,
            att,
            lambda s: cancel_step(s, fence, records, utcnow()),
            lambda s: verify_ended(s, fence, StepStatus.CANCELLED),
        )
        att.log.info("step stopped: run cancelled", extra={"action": "cancel_step"})
        _ended(att, "cancelled", records)
        return NOTHING
    except Exception as exc:
        fault = server_fault(exc)
        if fault is not None and not att.cancelled:
            _release(runtime, att, fault)
        else:
            _record_failure(runtime, att, exc)
        return NOTHING
    att.log.info("step succeeded", extra={"action": "complete_step"})
    duration = (utcnow() - claimed.started_at).total_seconds()
    _ended(att, "succeeded", records, duration)
    return continued


def _ended(
    att: Attempt, outcome: str, records: Records | None = None, duration_s: float | None = None
) -> None:
    """Count the attempt's end (and the costs it committed) in the worker's metrics."""
    claimed = att.claimed
    metrics.ended(claimed.workflow, claimed.key, outcome, duration_s)
    if records is not None:
        metrics.spent(records.costs)


#: An attempt that set nothing in motion.
NOTHING = Continued(Completion([], ""), None)


def _release(runtime: Runtime, att: Attempt, fault: ServerUnavailable) -> None:
    """A server of cairn's stopped the attempt: end it unspent, queue the step again later.

    When the database itself stays away, nothing can be written: the lease runs out and
    the reaper queues the step again once the database is back.
    """
    claimed = att.claimed
    fence = claimed.fence
    decision = decide_release(
        claimed.server_releases, runtime.settings.server_max_releases, utcnow()
    )
    if decision.next_attempt_at is None:
        gave_up = ServerUnavailable(
            f"{fault.server} failed {claimed.server_releases + 1} attempts in a row "
            f"(CAIRN_SERVER_MAX_RELEASES={runtime.settings.server_max_releases}); last: {fault}"
        )
        _record_failure(runtime, att, gave_up, fatal=True)
        return
    error = error_record(fault, runtime.settings.secret_values()) | {"server": fault.server}
    error.pop("traceback", None)
    records = att.pending_records()
    retry_at = decision.next_attempt_at
    try:
        ended = _fenced(
            runtime,
            att,
            lambda s: release_step(s, fence, error, retry_at, records, utcnow()),
            lambda s: verify_ended(s, fence, StepStatus.RETRYING),
        )
    except ServerUnavailable as exc:
        att.log.warning(
            "attempt abandoned, %s unavailable (%s); %s is away too, so the lease will run "
            "out and the step is queued again when it is back",
            fault.server,
            fault,
            exc.server,
            extra={"action": "release_step", "server": fault.server},
        )
        return
    _ended(att, "released", records)
    att.log.warning(
        "attempt released, %s unavailable: %s; the step runs again at %s, no attempt spent",
        fault.server,
        fault,
        retry_at.isoformat(timespec="seconds"),
        extra={"action": "release_step", "server": fault.server},
    )
    if ended is not None:
        runtime.dispatcher.send_requeue(
            fence.step_id, fence.attempt, retry_at, runtime.settings.default_queue
        )


def _record_failure(
    runtime: Runtime,
    att: Attempt,
    exc: Exception,
    *,
    fatal: bool = False,
) -> None:
    claimed = att.claimed
    fence = claimed.fence
    records = att.pending_records()
    if att.cancelled:
        _fenced(
            runtime,
            att,
            lambda s: cancel_step(s, fence, records, utcnow()),
            lambda s: verify_ended(s, fence, StepStatus.CANCELLED),
        )
        _ended(att, "cancelled", records)
        return
    now = utcnow()
    policy = claimed.retry.model_copy(update={"max_attempts": claimed.max_attempts})
    decision = (
        RetryDecision(None)
        if fatal
        else decide(policy, claimed.own_attempt, error_types(exc), now, retryable=is_retryable(exc))
    )
    error = error_record(exc, runtime.settings.secret_values())
    try:
        ended = _fenced(
            runtime,
            att,
            lambda s: fail_step(s, fence, claimed.key, error, decision, records, utcnow()),
            lambda s: verify_ended(s, fence, StepStatus.RETRYING, StepStatus.FAILED),
        )
    except ServerUnavailable as down:
        att.log.warning(
            "step failed (%s: %s) but %s is unavailable to record it; the lease will run out "
            "and the step runs again",
            error["type"],
            error["message"],
            down.server,
            extra={"action": "fail_step"},
        )
        return
    if ended is not None:
        _ended(att, "retried" if decision.retry else "failed", records)
    # The traceback logged is the recorded one, with every secret masked: a step's
    # exception may quote a URL with a password in it.
    att.log.log(
        logging.WARNING if decision.retry else logging.ERROR,
        "step failed (%s: %s)%s",
        error["type"],
        error["message"],
        " - will retry" if decision.retry else "\n" + error.get("traceback", ""),
        extra={"action": "fail_step"},
    )
    if ended is not None and decision.next_attempt_at is not None:
        runtime.dispatcher.send_requeue(
            fence.step_id, fence.attempt, decision.next_attempt_at, runtime.settings.default_queue
        )


def _fenced(
    runtime: Runtime,
    att: Attempt,
    work: Callable[[Any], Ended],
    verify: Callable[[Any], Ended | None],
) -> Ended | None:
    """Run a fenced verb that ends the attempt, and send the throttled steps its end
    woke; a lost lease means another attempt owns the step: log and go (None)."""
    try:
        ended = run_transaction(
            runtime.engine, work, verify=verify, retry_for_s=runtime.settings.server_retry_s
        )
    except StaleAttempt as exc:
        att.log.warning(
            "attempt superseded, nothing recorded: %s", exc, extra={"action": "lose_lease"}
        )
        return None
    runtime.dispatcher.send(ended.messages)
    return ended


def _call(fn: Callable[..., Any], ctx: StepContext, inputs: dict[str, Any]) -> Any:
    """Call ``fn(ctx, **inputs)``, passing only the inputs it names unless it takes **kwargs."""
    names = _accepted(fn)
    if names is None:
        return fn(ctx, **inputs)
    return fn(ctx, **{k: v for k, v in inputs.items() if k in names})


@functools.lru_cache(maxsize=1024)
def _accepted(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The input names ``fn`` takes; None if it takes ``**kwargs`` (asked once per
    function: ``inspect.signature`` is slow next to an inline step)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params)


def _store_output(runtime: Runtime, att: Attempt, result: Any) -> dict[str, Any] | BlobRef:
    """The output inline, or uploaded to the store when it is over the inline limit."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise DefinitionError(
            "output", f"a step must return a dict or None, not {type(result).__name__}"
        )
    settings = runtime.settings
    inline, data = blobs.encode(
        result, "output", max_depth=settings.max_json_depth, limit=settings.inline_limit_bytes
    )
    if data is None:
        assert inline is not None
        return inline
    return blobs.offload(runtime.step_store, att.blob_key("output.json"), data)


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`StepTimeout` in the step after ``seconds`` (main thread only).

    Celery's prefork pool runs tasks in the main thread of each child. In a thread pool
    the heartbeat enforces the timeout instead: it stops extending the lease and the
    step's next checkpoint raises.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(_signum: int, _frame: object) -> None:
        raise StepTimeout(f"the step ran longer than its timeout_s of {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
