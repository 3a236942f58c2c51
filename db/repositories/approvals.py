"""Approval requests and signals, as one tenant sees them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, select

from db.models import ApprovalRequest, WorkflowStep
from db.repositories.base import TenantRepository
from db.views import ApprovalView
from worker.errors import NotFound


class ApprovalRepository(TenantRepository):
    """Read the tenant's approval requests."""

    def list(
        self,
        *,
        status: str | None = None,
        run_id: uuid.UUID | None = None,
        group: str | None = None,
        limit: int = 100,
    ) -> Sequence[ApprovalView]:
        """Requests newest first, filtered by status, run and group."""
        query = self._query()
        if status is not None:
            query = query.where(ApprovalRequest.status == status)
        if run_id is not None:
            query = query.where(ApprovalRequest.run_id == run_id)
        if group is not None:
            query = query.where(ApprovalRequest.group_name == group)
        rows = self.session.execute(query.order_by(ApprovalRequest.id.desc()).limit(limit))
        return [ApprovalView.of(row, key) for row, key in rows]

    def get(self, approval_id: uuid.UUID) -> ApprovalView:
        """One request; :class:`NotFound` if missing or another tenant's."""
        found = self.session.execute(self._query().where(ApprovalRequest.id == approval_id)).first()
        if found is None:
            raise NotFound(f"approval request {approval_id} not found")
        return ApprovalView.of(found[0], found[1])

    def _query(self) -> Select[ApprovalRequest, str]:
        return (
            select(ApprovalRequest, WorkflowStep.key)
            .outerjoin(WorkflowStep, WorkflowStep.id == ApprovalRequest.step_id)
            .where(ApprovalRequest.tenant_id == self.tenant_id)
        )
