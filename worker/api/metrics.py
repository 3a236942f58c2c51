"""``GET /metrics``: the caller's tenant in Prometheus' text format, read from the
database at each scrape (the same numbers whichever API process answers): runs and steps
by status, approval requests waiting, and spend and tokens by provider and model.

Behind the same API key as every other endpoint. Attempt-level counters (durations,
queue waits, lease losses, reaper actions) come from each worker's own ``/metrics``
(``CAIRN_METRICS_PORT``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ApprovalRequest, CostRecord, WorkflowRun, WorkflowStep
from db.states import ApprovalStatus
from worker.api.bodies import StrictJsonRoute
from worker.api.state import Caller, State

router = APIRouter(tags=["metrics"], route_class=StrictJsonRoute)


class _Snapshot(Collector):
    """The tenant's numbers as metric families (read once, served once)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def read_families(session: Session, tenant_id: uuid.UUID) -> list[Any]:
    """The metric families of one tenant, read in one transaction."""
    runs = GaugeMetricFamily("cairn_runs", "Runs by status", labels=["status"])
    for status, count in session.execute(
        select(WorkflowRun.status, func.count())
        .where(WorkflowRun.tenant_id == tenant_id)
        .group_by(WorkflowRun.status)
    ):
        runs.add_metric([status], count)
    steps = GaugeMetricFamily("cairn_run_steps", "Steps by status", labels=["status"])
    for status, count in session.execute(
        select(WorkflowStep.status, func.count())
        .join(WorkflowRun, WorkflowRun.id == WorkflowStep.run_id)
        .where(WorkflowRun.tenant_id == tenant_id)
        .group_by(WorkflowStep.status)
    ):
        steps.add_metric([status], count)
    waiting = GaugeMetricFamily("cairn_approvals_waiting", "Approval requests not decided")
    waiting.add_metric(
        [],
        session.scalar(
            select(func.count()).where(
                ApprovalRequest.tenant_id == tenant_id,
                ApprovalRequest.status == ApprovalStatus.PENDING,
            )
        )
        or 0,
    )
    spend = CounterMetricFamily(
        "cairn_recorded_spend_usd", "Money recorded by steps", labels=["provider", "model"]
    )
    tokens = CounterMetricFamily(
        "cairn_recorded_tokens", "Tokens recorded by steps", labels=["provider", "model"]
    )
    for provider, model, usd, used in session.execute(
        select(
            CostRecord.provider,
            CostRecord.model,
            func.sum(CostRecord.usd),
            func.sum(CostRecord.input_tokens + CostRecord.output_tokens),
        )
        .join(WorkflowRun, WorkflowRun.id == CostRecord.run_id)
        .where(WorkflowRun.tenant_id == tenant_id)
        .group_by(CostRecord.provider, CostRecord.model)
    ):
        spend.add_metric([provider, model], float(usd or 0))
        tokens.add_metric([provider, model], float(used or 0))
    return [runs, steps, waiting, spend, tokens]


@router.get("/metrics", response_class=Response)
async def metrics(state: State, caller: Caller) -> Response:
    """The caller's tenant in Prometheus' text format."""
    families = await state.read(lambda s: read_families(s, caller.tenant_id))
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
