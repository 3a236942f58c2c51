"""Rows for tests of the data layer: a tenant with a project, a run, steps and records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session

from db.models import (
    Artifact,
    CostRecord,
    Project,
    StepEdge,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowStep,
)
from db.repositories import ensure_tenant


@dataclass
class World:
    """Ids of one tenant's project, run (two steps a -> b), cost and artifact."""

    tenant_id: uuid.UUID
    project_id: uuid.UUID
    run_id: uuid.UUID
    step_ids: list[uuid.UUID]
    cost_id: uuid.UUID
    artifact_id: uuid.UUID


def make_world(session: Session, tenant: str, idempotency_key: str | None = "key-1") -> World:
    """Create a tenant with a project, a definition, a two-step run, a cost and an artifact."""
    t = ensure_tenant(session, tenant)
    project = Project(tenant_id=t.id, name="main")
    session.add(project)
    session.flush()
    definition = WorkflowDefinition(
        tenant_id=t.id,
        project_id=project.id,
        name="wf",
        version=1,
        spec={"name": "wf", "steps": []},
        checksum="0" * 64,
    )
    session.add(definition)
    session.flush()
    run = WorkflowRun(
        tenant_id=t.id,
        project_id=project.id,
        definition_id=definition.id,
        inputs={"x": 1},
        idempotency_key=idempotency_key,
    )
    session.add(run)
    session.flush()
    steps = [
        WorkflowStep(run_id=run.id, key=key, task="noop", retry={}, queue="cairn")
        for key in ("a", "b")
    ]
    session.add_all(steps)
    session.flush()
    session.add(StepEdge(run_id=run.id, upstream_id=steps[0].id, downstream_id=steps[1].id))
    cost = CostRecord(
        run_id=run.id,
        step_id=steps[0].id,
        attempt=1,
        seq=1,
        provider="openai",
        model="gpt",
        input_tokens=10,
        output_tokens=5,
        usd=Decimal("0.00012345"),
    )
    artifact = Artifact(
        run_id=run.id,
        step_id=steps[0].id,
        attempt=1,
        name="report.txt",
        key=f"{t.id}/{run.id}/a/1/report.txt",
        size=3,
        sha256="a" * 64,
    )
    session.add_all([cost, artifact])
    session.flush()
    return World(t.id, project.id, run.id, [s.id for s in steps], cost.id, artifact.id)
