"""Artifact rows of one tenant's runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select, update

from db.models import Artifact, WorkflowRun, WorkflowStep
from db.repositories.base import TenantRepository
from db.views import ArtifactView, artifact_view
from worker.errors import NotFound


class ArtifactRepository(TenantRepository):
    """Read artifact rows of one tenant and mark them deleted."""

    def for_run(self, run_id: uuid.UUID) -> Sequence[Artifact]:
        """Every artifact row of a run, oldest first."""
        return self.session.scalars(
            self._artifacts().where(Artifact.run_id == run_id).order_by(Artifact.id)
        ).all()

    def views(self, run_id: uuid.UUID) -> list[ArtifactView]:
        """The views of a run's artifacts, oldest first, with the key of the step of each."""
        rows = self.session.execute(
            self._artifacts()
            .add_columns(WorkflowStep.key)
            .join(WorkflowStep, WorkflowStep.id == Artifact.step_id)
            .where(Artifact.run_id == run_id)
            .order_by(Artifact.id)
        ).all()
        return [artifact_view(artifact, key) for artifact, key in rows]

    def get(self, run_id: uuid.UUID, name: str, step_key: str | None = None) -> Artifact:
        """The artifact ``name`` of a run (of step ``step_key`` when several share a name)."""
        query = self._artifacts().where(Artifact.run_id == run_id, Artifact.name == name)
        if step_key is not None:
            query = query.join(WorkflowStep, WorkflowStep.id == Artifact.step_id).where(
                WorkflowStep.key == step_key
            )
        found = self.session.scalars(query.order_by(Artifact.id)).all()
        if not found:
            raise NotFound(f"artifact {name!r} not found in run {run_id}")
        if len(found) > 1:
            raise NotFound(f"several steps of run {run_id} made {name!r}; name the step")
        return found[0]

    def stored(self, run_id: uuid.UUID, name: str, step_key: str | None = None) -> Artifact:
        """:meth:`get`, for reading its object: :class:`NotFound` once retention deleted it."""
        row = self.get(run_id, name, step_key)
        if row.deleted_at is not None:
            raise NotFound(f"artifact {name!r} of run {run_id} was deleted by retention")
        return row

    def mark_deleted(self, artifact_id: uuid.UUID, when: datetime) -> None:
        """Record that the artifact's object was deleted; :class:`NotFound` if foreign."""
        owned = select(WorkflowRun.id).where(WorkflowRun.tenant_id == self.tenant_id)
        result = self.session.execute(
            update(Artifact)
            .where(Artifact.id == artifact_id, Artifact.run_id.in_(owned))
            .values(deleted_at=when)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"artifact {artifact_id} not found")

    def _artifacts(self) -> Select[Artifact]:
        return (
            select(Artifact)
            .join(WorkflowRun, WorkflowRun.id == Artifact.run_id)
            .where(WorkflowRun.tenant_id == self.tenant_id)
        )
