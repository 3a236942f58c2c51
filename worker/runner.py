"""Run one attempt of one step: claim, execute with heartbeat and timeout, record, dispatch.

This is what the ``cairn.execute_step`` task calls; it knows nothing of Celery.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from db.session import run_transaction
from db.types import utcnow
from worker import blobs
from worker.blobs import BlobRef
from worker.context import StepContext
from worker.engine.base import StepMessage
from worker.engine.claim import ClaimedStep, claim_step
from worker.engine.complete import complete_step
from worker.engine.fail import cancel_step, fail_step
from worker.engine.retry import decide
from worker.errors import (
    DefinitionError,
    RunCancelled,
    StaleAttempt,
    StepNotClaimable,
    StepTimeout,
    error_record,
    error_types,
)
from worker.heartbeat import Heartbeat
from worker.ids import new_id
from worker.runtime import Runtime

log = logging.getLogger("cairn.runner")


def execute_step(runtime: Runtime, step_id: uuid.UUID, attempt: int) -> None:
    """Run ``attempt`` of step ``step_id`` if it is still claimable; drop the message if not."""
    owner = f"{runtime.owner_prefix}:{new_id().hex[-12:]}"
    try:
        claimed = run_transaction(
            runtime.engine,
            lambda s: claim_step(s, step_id, attempt, owner, runtime.settings.lease_s, utcnow()),
        )
    except StepNotClaimable as exc:
        log.info(
            "message dropped: %s",
            exc,
            extra={"action": "drop_message", "step_id": step_id, "attempt": attempt},
        )
        return
    ctx = StepContext(runtime, claimed)
    ctx.log.info("step started", extra={"action": "claim_step", "owner": owner})
    heartbeat = Heartbeat(
        runtime.engine, claimed.fence, ctx, runtime.settings.lease_s, claimed.timeout_s
    ).start()
    try:
        messages = _run_and_record(runtime, claimed, ctx)
    finally:
        heartbeat.stop()
    runtime.dispatcher.send(messages)


def _run_and_record(runtime: Runtime, claimed: ClaimedStep, ctx: StepContext) -> list[StepMessage]:
    fence = claimed.fence
    try:
        fn = runtime.registry.get(claimed.task)
        inputs = {k: blobs.resolve(runtime.store, v) for k, v in claimed.inputs.items()}
        ctx.set_resume_state(blobs.resolve(runtime.store, claimed.resume_state))
        with _time_limit(claimed.timeout_s):
            result = _call(fn, ctx, inputs)
        output = _store_output(runtime, ctx, result)
        records = ctx.pending_records()
        completion = run_transaction(
            runtime.engine, lambda s: complete_step(s, fence, output, records, utcnow())
        )
    except StaleAttempt as exc:
        ctx.log.warning(
            "attempt superseded, nothing recorded: %s", exc, extra={"action": "lose_lease"}
        )
        return []
    except RunCancelled:
        records = ctx.pending_records()
        _fenced(runtime, ctx, lambda s: cancel_step(s, fence, records, utcnow()))
        ctx.log.info("step stopped: run cancelled", extra={"action": "cancel_step"})
        return []
    except Exception as exc:
        return _record_failure(runtime, claimed, ctx, exc)
    ctx.log.info("step succeeded", extra={"action": "complete_step"})
    return completion.messages


def _record_failure(
    runtime: Runtime, claimed: ClaimedStep, ctx: StepContext, exc: Exception
) -> list[StepMessage]:
    fence = claimed.fence
    records = ctx.pending_records()
    if ctx.cancelled:
        _fenced(runtime, ctx, lambda s: cancel_step(s, fence, records, utcnow()))
        return []
    now = utcnow()
    policy = claimed.retry.model_copy(update={"max_attempts": claimed.max_attempts})
    decision = decide(policy, fence.attempt, error_types(exc), now)
    error = error_record(exc, runtime.settings.secret_values())
    status = _fenced(
        runtime, ctx, lambda s: fail_step(s, fence, claimed.key, error, decision, records, utcnow())
    )
    level = logging.WARNING if decision.retry else logging.ERROR
    ctx.log.log(
        level,
        "step failed (%s: %s)%s",
        error["type"],
        error["message"],
        " - will retry" if decision.retry else "",
        extra={"action": "fail_step"},
        exc_info=not decision.retry,
    )
    if status is not None and decision.next_attempt_at is not None:
        runtime.dispatcher.send_requeue(
            fence.step_id,
            fence.attempt,
            decision.next_attempt_at,
            runtime.settings.default_queue,
        )
    return []


def _fenced(runtime: Runtime, ctx: StepContext, work: Callable[[Any], Any]) -> Any:
    """Run a fenced verb; a lost lease means another attempt owns the step: log and go."""
    try:
        return run_transaction(runtime.engine, work)
    except StaleAttempt as exc:
        ctx.log.warning(
            "attempt superseded, nothing recorded: %s", exc, extra={"action": "lose_lease"}
        )
        return None


def _call(fn: Callable[..., Any], ctx: StepContext, inputs: dict[str, Any]) -> Any:
    """Call ``fn(ctx, **inputs)``, passing only the inputs it names unless it takes **kwargs."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fn(ctx, **inputs)
    names = {p.name for p in params}
    return fn(ctx, **{k: v for k, v in inputs.items() if k in names})


def _store_output(runtime: Runtime, ctx: StepContext, result: Any) -> dict[str, Any] | BlobRef:
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
    return blobs.offload(runtime.store, ctx.blob_key("output.json"), data)


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
