"""Tenant isolation: a second tenant can neither read nor change the first one's rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from db.models import Artifact, Project, WorkflowRun
from db.repositories import (
    ArtifactRepository,
    CostRepository,
    ProjectRepository,
    RunRepository,
)
from db.session import transaction
from tests.support.factories import World, make_world
from worker.errors import NotFound


@pytest.fixture
def worlds(engine: Engine) -> tuple[World, World]:
    """Two tenants, each with a full run."""
    with transaction(engine) as session:
        return make_world(session, "acme"), make_world(session, "globex")


def test_owner_sees_its_rows(engine: Engine, worlds: tuple[World, World]) -> None:
    acme, _ = worlds
    with transaction(engine) as s:
        assert ProjectRepository(s, acme.tenant_id).get(acme.project_id).name == "main"
        assert [p.id for p in ProjectRepository(s, acme.tenant_id).list()] == [acme.project_id]
        runs = RunRepository(s, acme.tenant_id)
        assert runs.get(acme.run_id).id == acme.run_id
        assert [r.id for r in runs.list()] == [acme.run_id]
        assert [r.id for r in runs.list(workflow="wf", status="queued")] == [acme.run_id]
        assert runs.list(status="failed") == []
        assert runs.find_by_idempotency_key("key-1") is not None
        assert [st.key for st in runs.steps(acme.run_id)] == ["a", "b"]
        assert runs.step(acme.step_ids[0]).key == "a"
        costs = CostRepository(s, acme.tenant_id)
        assert [c.id for c in costs.for_run(acme.run_id)] == [acme.cost_id]
        assert [c.id for c in costs.for_step(acme.step_ids[0])] == [acme.cost_id]
        (total,) = costs.totals_by_model()
        assert (total.provider, total.model, total.input_tokens, total.records) == (
            "openai",
            "gpt",
            10,
            1,
        )
        artifacts = ArtifactRepository(s, acme.tenant_id)
        assert [a.id for a in artifacts.for_run(acme.run_id)] == [acme.artifact_id]
        assert artifacts.get(acme.run_id, "report.txt", step_key="a").id == acme.artifact_id


def test_foreign_tenant_cannot_read(engine: Engine, worlds: tuple[World, World]) -> None:
    acme, globex = worlds
    with transaction(engine) as s:
        projects = ProjectRepository(s, globex.tenant_id)
        runs = RunRepository(s, globex.tenant_id)
        costs = CostRepository(s, globex.tenant_id)
        artifacts = ArtifactRepository(s, globex.tenant_id)
        targets: list[tuple[Callable[[uuid.UUID], Any], uuid.UUID]] = [
            (projects.get, acme.project_id),
            (runs.get, acme.run_id),
            (runs.steps, acme.run_id),
            (runs.step, acme.step_ids[0]),
        ]
        for call, target in targets:
            with pytest.raises(NotFound):
                call(target)
        with pytest.raises(NotFound):
            artifacts.get(acme.run_id, "report.txt")
        assert projects.find("main") is not None  # its own project of the same name
        assert projects.find("main").id != acme.project_id  # type: ignore[union-attr]
        assert runs.find_by_idempotency_key("key-1").id == globex.run_id  # type: ignore[union-attr]
        assert acme.run_id not in [r.id for r in runs.list()]
        assert costs.for_run(acme.run_id) == []
        assert costs.for_step(acme.step_ids[0]) == []
        assert costs.totals_by_model(acme.run_id) == []
        assert artifacts.for_run(acme.run_id) == []


def test_foreign_tenant_cannot_change(engine: Engine, worlds: tuple[World, World]) -> None:
    acme, globex = worlds
    with transaction(engine) as s:
        with pytest.raises(NotFound):
            ProjectRepository(s, globex.tenant_id).rename(acme.project_id, "stolen")
        with pytest.raises(NotFound):
            ProjectRepository(s, globex.tenant_id).delete(acme.project_id)
        with pytest.raises(NotFound):
            RunRepository(s, globex.tenant_id).delete(acme.run_id)
        with pytest.raises(NotFound):
            ArtifactRepository(s, globex.tenant_id).mark_deleted(
                acme.artifact_id, datetime.now(UTC)
            )
    with transaction(engine) as s:
        project = s.get(Project, acme.project_id)
        assert project is not None
        assert project.name == "main"
        assert s.get(WorkflowRun, acme.run_id) is not None
        artifact = s.get(Artifact, acme.artifact_id)
        assert artifact is not None
        assert artifact.deleted_at is None


def test_owner_can_change(engine: Engine, worlds: tuple[World, World]) -> None:
    acme, globex = worlds
    with transaction(engine) as s:
        ProjectRepository(s, acme.tenant_id).rename(acme.project_id, "renamed")
        ArtifactRepository(s, acme.tenant_id).mark_deleted(acme.artifact_id, datetime.now(UTC))
        RunRepository(s, acme.tenant_id).delete(acme.run_id)
    with transaction(engine) as s:
        assert s.get(Project, acme.project_id).name == "renamed"  # type: ignore[union-attr]
        assert s.get(WorkflowRun, acme.run_id) is None
        assert s.scalars(select(WorkflowRun.id)).all() == [globex.run_id]
