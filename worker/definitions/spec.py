"""The shape of a workflow definition, as pydantic models.

A definition is a JSON or YAML document, or built in Python with these classes::

    WorkflowSpec(name="report", steps=[
        StepSpec(key="fetch", task="fetch_pages"),
        StepSpec(key="summarise", task="summarise", after=["fetch"],
                 retry=RetryPolicy(max_attempts=3)),
    ])
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from worker.serialization import text_problem

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"


#: Longest description, and longest error type name in ``non_retryable``.
DESCRIPTION_MAX = 2000
ERROR_NAME_MAX = 200
#: Versions are 32-bit integer columns.
VERSION_MAX = 2**31 - 1


class _Strict(BaseModel):
    # Numbers must be numbers: "3" or true for max_attempts is refused, not converted.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _storable(value: str) -> str:
    """Refuse text no database stores (NUL, lone surrogates)."""
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class RetryPolicy(_Strict):
    """How often a step is tried and how long to wait between attempts."""

    #: Attempts in all, the first included. 1 means no retry.
    max_attempts: StrictInt = Field(1, ge=1, le=100)
    #: Delay before the second attempt; doubles for each one after.
    backoff_base_s: StrictFloat = Field(1.0, ge=0, le=86400)
    #: Upper bound of the delay before jitter (a capped delay still spreads by ``jitter``,
    #: so retries that all reached the cap do not fire together).
    backoff_max_s: StrictFloat = Field(300.0, ge=0, le=86400)
    #: Fraction of the delay added or removed at random, so retries do not stampede.
    jitter: StrictFloat = Field(0.1, ge=0, le=1)
    #: Error type names that fail the step at once, whatever attempts are left.
    non_retryable: tuple[StrictStr, ...] = Field((), max_length=100)

    @field_validator("non_retryable")
    @classmethod
    def _names_storable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(value):
            if not name or len(name) > ERROR_NAME_MAX:
                raise ValueError(f"entry {i} must be 1 to {ERROR_NAME_MAX} characters")
            problem = text_problem(name)
            if problem:
                raise ValueError(f"entry {i} {problem}")
        return value

    @model_validator(mode="after")
    def _max_not_below_base(self) -> RetryPolicy:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must not be smaller than backoff_base_s")
        return self


class ApprovalGate(_Strict):
    """An approval asked before a step's code runs, declared in the definition."""

    title: StrictStr = Field(min_length=1, max_length=500)
    details: dict[str, Any] | None = None
    #: Nobody decided in this long: ``on_timeout`` applies. None: it waits for ever.
    timeout_s: StrictFloat | None = Field(None, gt=0, le=366 * 86400)
    #: ``fail`` the step, ``approve`` it, or ``escalate`` to the ``escalate_to`` group.
    on_timeout: Literal["fail", "approve", "escalate"] = "fail"
    #: The group asked to decide.
    group: StrictStr | None = Field(None, min_length=1, max_length=200)
    escalate_to: StrictStr | None = Field(None, min_length=1, max_length=200)

    @field_validator("title")
    @classmethod
    def _title_storable(cls, value: str) -> str:
        return _storable(value)

    @model_validator(mode="after")
    def _escalation_named(self) -> ApprovalGate:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout 'escalate' needs escalate_to, the group to escalate to")
        if self.on_timeout != "fail" and self.timeout_s is None:
            raise ValueError(f"on_timeout {self.on_timeout!r} needs timeout_s")
        return self


#: ``<upstream key>.<field>[.<field>...]``: a list in an upstream step's output.
OVER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,99}(\.[A-Za-z0-9_\-]{1,100}){1,8}$"


class MapSpec(_Strict):
    """A step mapped over a list produced at run time: one element step per item."""

    #: Where the list is: ``<upstream key>.<field>`` (the upstream must be in ``after``).
    over: StrictStr = Field(pattern=OVER_PATTERN)
    #: The step function each element runs; it gets ``item`` and ``index`` as inputs.
    task: StrictStr = Field(pattern=NAME_PATTERN)
    #: Elements queued or running at once, at most.
    max_parallel: StrictInt = Field(10, ge=1, le=10_000)

    @property
    def upstream(self) -> str:
        """The key of the step whose output holds the list."""
        return self.over.split(".", 1)[0]

    @property
    def path(self) -> tuple[str, ...]:
        """The fields leading to the list inside that output."""
        return tuple(self.over.split(".")[1:])


class ConcurrencySpec(_Strict):
    """At most ``limit`` attempts with the same key run at once, across every worker.

    ``key`` is a template over the run's inputs (and a map element's ``item`` and
    ``index``): ``"{customer}"``, ``"openai:{model}"``, or a fixed name.
    """

    key: StrictStr = Field(min_length=1, max_length=200)
    limit: StrictInt = Field(ge=1, le=100_000)

    @field_validator("key")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"is not a template of input names in braces: {exc}") from None
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"{{{name}}} is not an input name")
        return _storable(value)


class StepSpec(_Strict):
    """One step of a workflow: which function runs, after which steps, and how."""

    key: StrictStr = Field(pattern=KEY_PATTERN)
    #: The name a function was registered under with ``@step``; None for a map step.
    task: StrictStr | None = Field(None, pattern=NAME_PATTERN)
    #: Run ``map.task`` once per item of a list an upstream step returns; the steps
    #: after this one get the elements' outputs as a list, in order.
    map: MapSpec | None = None
    after: tuple[StrictStr, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    #: An attempt running longer than this fails (and is retried if attempts are left).
    timeout_s: StrictFloat | None = Field(None, gt=0, le=7 * 86400)
    #: Celery queue; the default queue when None.
    queue: StrictStr | None = Field(None, pattern=NAME_PATTERN)
    #: 0 (lowest) to 9 (highest).
    priority: StrictInt = Field(5, ge=0, le=9)
    #: Ask a person before the step runs (no code needed); the run waits, holding no worker.
    approve: ApprovalGate | None = None
    #: At most ``limit`` attempts with the same key at once (the workflow's, when None).
    concurrency: ConcurrencySpec | None = None
    #: Named rate limits (``CAIRN_RATE_LIMITS``) each attempt takes one request from
    #: before its code runs (``ctx.rate_limit`` takes more, with tokens, in the code).
    rate_limits: tuple[StrictStr, ...] = Field((), max_length=10)

    @model_validator(mode="after")
    def _task_or_map(self) -> StepSpec:
        if (self.task is None) == (self.map is None):
            raise ValueError("a step needs either task or map, not both")
        if self.map is not None and self.approve is not None:
            raise ValueError("a map step cannot have an approve gate (put it on a step before)")
        return self

    @property
    def runs(self) -> str:
        """The step function this step's attempts (or its map's elements) run."""
        runs = self.task if self.map is None else self.map.task
        assert runs is not None  # one of the two, by the validator
        return runs


class WorkflowSpec(_Strict):
    """A workflow: a name and a DAG of steps."""

    name: StrictStr = Field(pattern=NAME_PATTERN)
    #: Optional explicit version; cairn numbers versions itself when it is left out.
    version: StrictInt | None = Field(None, ge=1, le=VERSION_MAX)
    description: StrictStr | None = Field(None, max_length=DESCRIPTION_MAX)
    steps: tuple[StepSpec, ...] = Field(min_length=1, max_length=5000)
    #: The concurrency limit of every step that does not declare its own.
    concurrency: ConcurrencySpec | None = None

    @field_validator("description")
    @classmethod
    def _description_storable(cls, value: str | None) -> str | None:
        return None if value is None else _storable(value)

    def body(self) -> dict[str, Any]:
        """The spec as JSON, without ``version``: what the checksum is taken of."""
        body = self.model_dump(mode="json", exclude={"version"})
        if body.get("concurrency") is None:
            body.pop("concurrency", None)
        for step in body["steps"]:
            # Specs from before gates existed keep their checksum (and so their version).
            for optional in ("approve", "map", "concurrency"):
                if step.get(optional) is None:
                    step.pop(optional, None)
            if not step.get("rate_limits"):
                step.pop("rate_limits", None)
        return body
