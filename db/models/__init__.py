"""Every table of cairn. Importing this package registers them all on ``Base.metadata``."""

from db.models.apikeys import ApiKey, DashboardSession
from db.models.approvals import ApprovalRequest
from db.models.artifacts import Artifact
from db.models.definitions import WorkflowDefinition
from db.models.records import Checkpoint, CostRecord, Message
from db.models.runs import Branch, RunEvent, WorkflowMetric, WorkflowRun
from db.models.schedules import Schedule
from db.models.steps import StepEdge, WorkflowStep
from db.models.tenancy import Project, Tenant
from db.models.waits import Notification, Signal, StepWait
from db.models.workers import Worker

__all__ = [
    "ApiKey",
    "ApprovalRequest",
    "Artifact",
    "Branch",
    "Checkpoint",
    "CostRecord",
    "DashboardSession",
    "Message",
    "Notification",
    "Project",
    "RunEvent",
    "Schedule",
    "Signal",
    "StepEdge",
    "StepWait",
    "Tenant",
    "Worker",
    "WorkflowDefinition",
    "WorkflowMetric",
    "WorkflowRun",
    "WorkflowStep",
]
