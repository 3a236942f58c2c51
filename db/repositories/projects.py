"""Projects of one tenant."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update

from db.models import Project, Schedule, WorkflowDefinition
from db.repositories.base import TenantRepository
from db.session import upsert
from db.views import DefinitionView, ScheduleView
from worker.errors import NotFound


class ProjectRepository(TenantRepository):
    """Read and change the projects of one tenant."""

    def get(self, project_id: uuid.UUID) -> Project:
        """The project ``project_id``; :class:`NotFound` if missing or another tenant's."""
        project = self.session.scalar(
            select(Project).where(Project.id == project_id, Project.tenant_id == self.tenant_id)
        )
        if project is None:
            raise NotFound(f"project {project_id} not found")
        return project

    def find(self, name: str) -> Project | None:
        """The project called ``name``, or None."""
        return self.session.scalar(
            select(Project).where(Project.name == name, Project.tenant_id == self.tenant_id)
        )

    def ensure(self, name: str) -> Project:
        """The project called ``name``, created when missing."""
        project = self.find(name)
        if project is None:  # a concurrent creator's row wins the unique index, not an error
            conn = self.session.connection()
            conn.execute(
                upsert(conn, Project)
                .values(tenant_id=self.tenant_id, name=name)
                .on_conflict_do_nothing()
            )
            project = self.find(name)
            assert project is not None  # inserted, or inserted by the winner
        return project

    def list(self) -> Sequence[Project]:
        """Every project of the tenant, oldest first."""
        return self.session.scalars(
            select(Project).where(Project.tenant_id == self.tenant_id).order_by(Project.id)
        ).all()

    def rename(self, project_id: uuid.UUID, name: str) -> None:
        """Rename a project; :class:`NotFound` if missing or another tenant's."""
        result = self.session.execute(
            update(Project)
            .where(Project.id == project_id, Project.tenant_id == self.tenant_id)
            .values(name=name)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"project {project_id} not found")

    def delete(self, project_id: uuid.UUID) -> None:
        """Delete a project and, by cascade, its definitions, runs and their records."""
        result = self.session.execute(
            delete(Project).where(Project.id == project_id, Project.tenant_id == self.tenant_id)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"project {project_id} not found")

    def definitions(self, project_id: uuid.UUID) -> Sequence[DefinitionView]:
        """Every stored version of every workflow of the project, by name and version."""
        self.get(project_id)
        rows = self.session.scalars(
            select(WorkflowDefinition)
            .where(WorkflowDefinition.project_id == project_id)
            .order_by(WorkflowDefinition.name, WorkflowDefinition.version)
        ).all()
        return [DefinitionView.of(d) for d in rows]

    def schedule(self, schedule_id: uuid.UUID) -> ScheduleView:
        """One of the tenant's schedules; :class:`NotFound` if missing or another tenant's."""
        row = self.session.scalar(
            select(Schedule).where(Schedule.id == schedule_id, Schedule.tenant_id == self.tenant_id)
        )
        if row is None:
            raise NotFound(f"schedule {schedule_id} not found")
        return ScheduleView.of(row)

    def schedules(self) -> Sequence[ScheduleView]:
        """The tenant's schedules, by name."""
        rows = self.session.scalars(
            select(Schedule).where(Schedule.tenant_id == self.tenant_id).order_by(Schedule.name)
        ).all()
        return [ScheduleView.of(r) for r in rows]
