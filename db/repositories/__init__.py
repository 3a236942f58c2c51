"""Tenant-scoped queries. They take a session and never commit."""

from db.repositories.approvals import ApprovalRepository
from db.repositories.artifacts import ArtifactRepository
from db.repositories.base import TenantRepository, ensure_tenant, find_tenant
from db.repositories.costs import ActivityRepository, CostRepository
from db.repositories.projects import ProjectRepository
from db.repositories.runs import RunRepository
from db.repositories.workers import WorkerRepository

__all__ = [
    "ActivityRepository",
    "ApprovalRepository",
    "ArtifactRepository",
    "CostRepository",
    "ProjectRepository",
    "RunRepository",
    "TenantRepository",
    "WorkerRepository",
    "ensure_tenant",
    "find_tenant",
]
