"""The shape of a workflow definition, as pydantic models.

A definition is a JSON or YAML document, or built in Python with these classes::

    WorkflowSpec(name="report", steps=[
        StepSpec(key="fetch", task="fetch_pages"),
        StepSpec(key="summarise", task="summarise", after=["fetch"],
                 retry=RetryPolicy(max_attempts=3)),
    ])
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """How often a step is tried and how long to wait between attempts."""

    #: Attempts in all, the first included. 1 means no retry.
    max_attempts: int = Field(1, ge=1, le=100)
    #: Delay before the second attempt; doubles for each one after.
    backoff_base_s: float = Field(1.0, ge=0, le=86400)
    #: Upper bound of the delay.
    backoff_max_s: float = Field(300.0, ge=0, le=86400)
    #: Fraction of the delay added or removed at random, so retries do not stampede.
    jitter: float = Field(0.1, ge=0, le=1)
    #: Error type names that fail the step at once, whatever attempts are left.
    non_retryable: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _max_not_below_base(self) -> RetryPolicy:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must not be smaller than backoff_base_s")
        return self


class StepSpec(_Strict):
    """One step of a workflow: which function runs, after which steps, and how."""

    key: str = Field(pattern=KEY_PATTERN)
    #: The name a function was registered under with ``@step``.
    task: str = Field(pattern=NAME_PATTERN)
    after: tuple[str, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    #: An attempt running longer than this fails (and is retried if attempts are left).
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    #: Celery queue; the default queue when None.
    queue: str | None = Field(None, pattern=NAME_PATTERN)
    #: 0 (lowest) to 9 (highest).
    priority: int = Field(5, ge=0, le=9)


class WorkflowSpec(_Strict):
    """A workflow: a name and a DAG of steps."""

    name: str = Field(pattern=NAME_PATTERN)
    #: Optional explicit version; cairn numbers versions itself when it is left out.
    version: int | None = Field(None, ge=1)
    description: str | None = Field(None, max_length=2000)
    steps: tuple[StepSpec, ...] = Field(min_length=1, max_length=5000)

    def body(self) -> dict[str, Any]:
        """The spec as JSON, without ``version``: what the checksum is taken of."""
        return self.model_dump(mode="json", exclude={"version"})
