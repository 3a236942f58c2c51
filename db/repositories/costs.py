"""Costs of one tenant's runs: per record, per step, and totals by provider and model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select

from db.models import CostRecord, WorkflowRun, WorkflowStep
from db.repositories.base import TenantRepository
from db.views import Activity, CostSummary, CostTotal, StepCost, money


class CostRepository(TenantRepository):
    """Read the cost records of one tenant."""

    def for_run(self, run_id: uuid.UUID) -> Sequence[CostRecord]:
        """Every cost record of a run, in the order they were made."""
        return self.session.scalars(
            self._costs().where(CostRecord.run_id == run_id).order_by(CostRecord.id)
        ).all()

    def for_step(self, step_id: uuid.UUID) -> Sequence[CostRecord]:
        """Every cost record of one step, all attempts."""
        return self.session.scalars(
            self._costs().where(CostRecord.step_id == step_id).order_by(CostRecord.id)
        ).all()

    def totals_by_model(self, run_id: uuid.UUID | None = None) -> list[CostTotal]:
        """Sums by (provider, model), for one run or for the whole tenant."""
        query = (
            select(
                CostRecord.provider,
                CostRecord.model,
                func.sum(CostRecord.input_tokens),
                func.sum(CostRecord.output_tokens),
                func.sum(CostRecord.usd),
                func.count(),
            )
            .join(WorkflowRun, WorkflowRun.id == CostRecord.run_id)
            .where(WorkflowRun.tenant_id == self.tenant_id)
            .group_by(CostRecord.provider, CostRecord.model)
            .order_by(CostRecord.provider, CostRecord.model)
        )
        if run_id is not None:
            query = query.where(CostRecord.run_id == run_id)
        return [
            CostTotal(p, m, int(i or 0), int(o or 0), money(u), int(n))
            for p, m, i, o, u, n in self.session.execute(query)
        ]

    def _costs(self) -> Select[CostRecord]:
        return (
            select(CostRecord)
            .join(WorkflowRun, WorkflowRun.id == CostRecord.run_id)
            .where(WorkflowRun.tenant_id == self.tenant_id)
        )

    def summary(self, run_id: uuid.UUID, total_usd: Decimal) -> CostSummary:
        """A run's costs per step and by provider and model (the run checked by the caller)."""
        per_step = self.session.execute(
            select(
                WorkflowStep.key,
                func.coalesce(func.sum(CostRecord.input_tokens), 0),
                func.coalesce(func.sum(CostRecord.output_tokens), 0),
                func.coalesce(func.sum(CostRecord.usd), 0),
            )
            .join(CostRecord, CostRecord.step_id == WorkflowStep.id)
            .where(WorkflowStep.run_id == run_id)
            .group_by(WorkflowStep.key)
            .order_by(WorkflowStep.key)
        ).all()
        return CostSummary(
            run_id=run_id,
            total_usd=money(total_usd),
            steps=tuple(StepCost(k, int(i), int(o), money(u)) for k, i, o, u in per_step),
            by_model=tuple(self.totals_by_model(run_id)),
        )


def utc_day(session_dialect: str, column: Any) -> Any:
    """``column``'s UTC calendar day as ``YYYY-MM-DD`` text, on either database."""
    if session_dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


class ActivityRepository(TenantRepository):
    """The tenant's runs and spend per UTC day, for the dashboard's overview."""

    def activity(self, since: datetime) -> Activity:
        """Runs started per day and status, and money recorded per day, since ``since``."""
        dialect = self.session.get_bind().dialect.name
        run_day = utc_day(dialect, WorkflowRun.created_at)
        runs = self.session.execute(
            select(run_day, WorkflowRun.status, func.count())
            .where(WorkflowRun.tenant_id == self.tenant_id, WorkflowRun.created_at >= since)
            .group_by(run_day, WorkflowRun.status)
            .order_by(run_day)
        ).all()
        cost_day = utc_day(dialect, CostRecord.created_at)
        spend = self.session.execute(
            select(cost_day, func.sum(CostRecord.usd))
            .join(WorkflowRun, WorkflowRun.id == CostRecord.run_id)
            .where(WorkflowRun.tenant_id == self.tenant_id, CostRecord.created_at >= since)
            .group_by(cost_day)
            .order_by(cost_day)
        ).all()
        return Activity(
            [{"day": str(day), "status": status, "runs": int(n)} for day, status, n in runs],
            [{"day": str(day), "usd": money(usd)} for day, usd in spend],
        )
