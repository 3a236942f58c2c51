"""Workflow definitions: the spec (pydantic models), pure validation, pure DAG helpers."""

from worker.definitions.spec import RetryPolicy, StepSpec, WorkflowSpec
from worker.definitions.validate import parse_spec, validate_spec

__all__ = ["RetryPolicy", "StepSpec", "WorkflowSpec", "parse_spec", "validate_spec"]
