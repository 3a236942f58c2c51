"""Costs of one tenant's runs: per record, per step, and totals by provider and model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Select, func, select

from db.models import CostRecord, WorkflowRun, WorkflowStep
from db.repositories.base import TenantRepository
from db.views import CostSummary, CostTotal, StepCost, money


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
