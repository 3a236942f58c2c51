"""Store and find workflow definitions, versioned per project by checksum."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import WorkflowDefinition
from worker.definitions.spec import WorkflowSpec
from worker.errors import DefinitionError
from worker.serialization import checksum


def store_definition(
    session: Session, tenant_id: uuid.UUID, project_id: uuid.UUID, spec: WorkflowSpec
) -> WorkflowDefinition:
    """The stored version of ``spec``: the same spec is the same version, a changed one new.

    A spec that names its ``version`` must match what is stored under that number.
    """
    body = spec.body()
    digest = checksum(body)
    same = session.scalar(
        select(WorkflowDefinition).where(
            WorkflowDefinition.project_id == project_id,
            WorkflowDefinition.name == spec.name,
            WorkflowDefinition.checksum == digest,
        )
    )
    if same is not None:
        if spec.version is not None and spec.version != same.version:
            raise DefinitionError(
                "version", f"this spec of {spec.name!r} is already stored as version {same.version}"
            )
        return same
    latest = session.scalar(
        select(func.max(WorkflowDefinition.version)).where(
            WorkflowDefinition.project_id == project_id, WorkflowDefinition.name == spec.name
        )
    )
    if spec.version is not None and latest is not None and spec.version <= latest:
        raise DefinitionError(
            "version",
            f"version {spec.version} of {spec.name!r} is taken by a different spec; "
            f"use {latest + 1} or leave version out",
        )
    definition = WorkflowDefinition(
        tenant_id=tenant_id,
        project_id=project_id,
        name=spec.name,
        version=spec.version or (latest or 0) + 1,
        spec=body,
        checksum=digest,
    )
    session.add(definition)
    session.flush()
    return definition


def find_definition(
    session: Session, project_id: uuid.UUID, name: str, version: int | None = None
) -> WorkflowDefinition:
    """Version ``version`` of workflow ``name`` (the newest when None)."""
    query = select(WorkflowDefinition).where(
        WorkflowDefinition.project_id == project_id, WorkflowDefinition.name == name
    )
    if version is not None:
        query = query.where(WorkflowDefinition.version == version)
    found = session.scalar(query.order_by(WorkflowDefinition.version.desc()).limit(1))
    if found is None:
        which = f"version {version} of " if version is not None else ""
        raise DefinitionError(
            "workflow", f"no {which}workflow named {name!r} is registered in this project"
        )
    return found


def spec_of(definition: WorkflowDefinition) -> WorkflowSpec:
    """The spec a stored definition holds."""
    return WorkflowSpec.model_validate(definition.spec | {"version": definition.version})
