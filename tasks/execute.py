"""cairn.execute_step and cairn.requeue_step: the messages that move steps."""

from __future__ import annotations

from celery import Celery, Task

from db.session import run_transaction
from db.types import utcnow
from worker import tracing, wire
from worker.ids import parse_id
from worker.machine.recovery import requeue_retrying
from worker.runner import execute_step
from worker.runtime import Runtime


def register(app: Celery, runtime: Runtime) -> None:
    """Register the step tasks on ``app``."""

    @app.task(name=wire.EXECUTE_STEP, ignore_result=True, acks_late=True, bind=True)
    def execute_step_task(self: Task, step_id: str, attempt: int) -> None:  # type: ignore[type-arg]
        queue = (self.request.delivery_info or {}).get("routing_key")
        request = self.request
        headers = {
            k: v
            for k in tracing.CONTEXT_KEYS
            if (v := getattr(request, k, None) or (request.headers or {}).get(k))
        }
        execute_step(runtime, parse_id(step_id, "step_id"), int(attempt), queue, headers)

    @app.task(name=wire.REQUEUE_STEP, ignore_result=True, acks_late=True)
    def requeue_step_task(step_id: str, attempt: int) -> None:
        del attempt  # the guarded update re-checks status and backoff itself
        messages = run_transaction(
            runtime.engine,
            lambda s: requeue_retrying(s, utcnow(), step_id=parse_id(step_id, "step_id")),
        )
        runtime.dispatcher.send(messages)
