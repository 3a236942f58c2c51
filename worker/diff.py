"""Diff two runs of one workflow (a run and its fork, two forks): step by step, which
inputs, outputs, artifacts (by sha256) and costs differ.

JSON-aware: a change is named by its path inside the value (``summary.words[2]``), as
added, removed or changed, so a one-word edit in a large output reads as one line. A
step's inputs are the run inputs it ran with plus its own (a fork's edits); a step a fork
reused ran with its origin's inputs, so it never shows the fork's edits. Upstream
outputs are not repeated under each dependent: they are the upstream step's output.

:func:`load_side` reads a run (one transaction); :func:`diff_runs` and :func:`render` are
pure.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.models import (
    Artifact,
    Branch,
    CostRecord,
    WorkflowDefinition,
    WorkflowRun,
    WorkflowStep,
)
from worker.errors import DefinitionError, NotFound

#: Changes listed per value at most; the rest are counted.
MAX_CHANGES = 50
#: A string or a JSON value longer than this is shortened when shown.
SHOW_MAX = 60


@dataclass(frozen=True)
class Change:
    """One difference inside a JSON value, at ``path`` (``""``: the whole value)."""

    path: str
    kind: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class StepSide:
    """What one run's step was: what it ran with, what it made, what it cost."""

    key: str
    status: str
    inputs: dict[str, Any]
    #: Inline output, or ``{"$blob": sha256}`` for a stored one (compared by checksum).
    output: Any
    #: Artifact name -> sha256.
    artifacts: dict[str, str]
    cost_usd: Decimal
    #: The step that ran, when this one was reused from another run (a fork's).
    origin_step_id: uuid.UUID | None
    id: uuid.UUID


@dataclass(frozen=True)
class RunSide:
    """One run as the diff compares it."""

    id: uuid.UUID
    workflow: str
    status: str
    inputs: dict[str, Any]
    cost_usd: Decimal
    parent_run_id: uuid.UUID | None
    #: The step of the parent this run was forked from.
    forked_at: str | None
    steps: dict[str, StepSide]


@dataclass(frozen=True)
class StepDiff:
    """How one step differs between the two runs."""

    key: str
    #: ``same``, ``changed``, ``only_a`` or ``only_b``.
    verdict: str
    status: tuple[str | None, str | None]
    #: One run reuses the other's step (or both reuse one step): it did not run again.
    reused: bool
    inputs: list[Change] = field(default_factory=list)
    output: list[Change] = field(default_factory=list)
    artifacts: list[Change] = field(default_factory=list)
    cost_usd: tuple[Decimal | None, Decimal | None] = (None, None)


@dataclass(frozen=True)
class RunDiff:
    """Two runs compared: their lineage, their inputs, and step by step."""

    a: uuid.UUID
    b: uuid.UUID
    workflow: str
    #: How the two are related, in words (``b was forked from a at step s3``).
    lineage: str
    status: tuple[str, str]
    cost_usd: tuple[Decimal, Decimal]
    inputs: list[Change]
    steps: list[StepDiff]

    @property
    def changed_steps(self) -> list[str]:
        """Keys of the steps that differ in any way."""
        return [s.key for s in self.steps if s.verdict != "same"]


def json_changes(before: Any, after: Any, path: str = "") -> list[Change]:
    """Every difference between two JSON values, as paths into them, in document order."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[Change] = []
        for key in before:
            sub = _join(path, key)
            if key not in after:
                out.append(Change(sub, "removed", before=before[key]))
            else:
                out += json_changes(before[key], after[key], sub)
        out += [
            Change(_join(path, k), "added", after=v) for k, v in after.items() if k not in before
        ]
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i in range(max(len(before), len(after))):
            sub = f"{path}[{i}]"
            if i >= len(after):
                out.append(Change(sub, "removed", before=before[i]))
            elif i >= len(before):
                out.append(Change(sub, "added", after=after[i]))
            else:
                out += json_changes(before[i], after[i], sub)
        return out
    if type(before) is not type(after) or before != after:
        return [Change(path, "changed", before, after)]
    return []


def _join(path: str, key: str) -> str:
    """``path.key``; a key that is not a plain name is quoted (``path["a.b"]``), except
    at the top, where a name (an input, an artifact like ``report.pdf``) reads as is."""
    if not path and key and not any(c in key for c in ' []"'):
        return key
    simple = key.replace("_", "").replace("-", "").isalnum()
    return f"{path}.{key}" if simple else f"{path}[{json.dumps(key)}]"


def diff_runs(a: RunSide, b: RunSide) -> RunDiff:
    """Compare two runs of one workflow, step by step (in ``a``'s order, then ``b``'s)."""
    if a.workflow != b.workflow:
        raise DefinitionError(
            "runs", f"run {a.id} is of workflow {a.workflow!r} and run {b.id} of {b.workflow!r}"
        )
    keys = list(a.steps) + [k for k in b.steps if k not in a.steps]
    steps = [_step_diff(k, a.steps.get(k), b.steps.get(k)) for k in keys]
    return RunDiff(
        a=a.id,
        b=b.id,
        workflow=a.workflow,
        lineage=_lineage(a, b),
        status=(a.status, b.status),
        cost_usd=(a.cost_usd, b.cost_usd),
        inputs=json_changes(a.inputs, b.inputs),
        steps=steps,
    )


def _lineage(a: RunSide, b: RunSide) -> str:
    if b.parent_run_id == a.id:
        return f"b was forked from a at step {b.forked_at}"
    if a.parent_run_id == b.id:
        return f"a was forked from b at step {a.forked_at}"
    if a.parent_run_id is not None and a.parent_run_id == b.parent_run_id:
        return (
            f"both were forked from run {a.parent_run_id} (a at step {a.forked_at}, "
            f"b at step {b.forked_at})"
        )
    return "two runs of one workflow (neither was forked from the other)"


def _origin(step: StepSide) -> uuid.UUID:
    return step.origin_step_id or step.id


def _step_diff(key: str, a: StepSide | None, b: StepSide | None) -> StepDiff:
    if a is None or b is None:
        only = "only_b" if a is None else "only_a"
        status = (a.status if a else None, b.status if b else None)
        return StepDiff(key, only, status, False)
    reused = _origin(a) == _origin(b)
    inputs = json_changes(a.inputs, b.inputs)
    output = json_changes(a.output, b.output)
    artifacts = json_changes(a.artifacts, b.artifacts)
    cost = (a.cost_usd, b.cost_usd)
    same = (
        not inputs and not output and not artifacts and a.cost_usd == b.cost_usd
    ) and a.status == b.status
    return StepDiff(
        key,
        "same" if same else "changed",
        (a.status, b.status),
        reused,
        inputs,
        output,
        artifacts,
        cost,
    )


def load_side(session: Session, tenant_id: uuid.UUID, run_id: uuid.UUID) -> RunSide:
    """One of the tenant's runs as the diff compares it; :class:`NotFound` if foreign."""
    row = session.execute(
        select(WorkflowRun, WorkflowDefinition.name)
        .join(WorkflowDefinition, WorkflowDefinition.id == WorkflowRun.definition_id)
        .where(WorkflowRun.id == run_id, WorkflowRun.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound(f"run {run_id} not found")
    run, workflow = row
    forked_from = aliased(WorkflowStep)
    forked_at = session.scalar(
        select(forked_from.key)
        .join(Branch, Branch.from_step_id == forked_from.id)
        .where(Branch.child_run_id == run_id)
    )
    origin = aliased(WorkflowStep)
    origin_run = aliased(WorkflowRun)
    steps = session.execute(
        select(
            WorkflowStep.id,
            WorkflowStep.key,
            WorkflowStep.status,
            WorkflowStep.inputs,
            WorkflowStep.output,
            WorkflowStep.output_sha256,
            WorkflowStep.origin_step_id,
            origin_run.inputs.label("origin_inputs"),
        )
        .outerjoin(origin, origin.id == WorkflowStep.origin_step_id)
        .outerjoin(origin_run, origin_run.id == origin.run_id)
        .where(WorkflowStep.run_id == run_id, WorkflowStep.map_parent_id.is_(None))
        .order_by(WorkflowStep.created_at, WorkflowStep.id)
    ).all()
    ran = {s.origin_step_id or s.id for s in steps}
    costs = dict(
        session.execute(
            select(CostRecord.step_id, func.sum(CostRecord.usd))
            .where(CostRecord.step_id.in_(ran))
            .group_by(CostRecord.step_id)
        ).all()
    )
    artifacts: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)
    for step_id, name, sha in session.execute(
        select(Artifact.step_id, Artifact.name, Artifact.sha256).where(
            Artifact.run_id == run_id, Artifact.deleted_at.is_(None)
        )
    ):
        artifacts[step_id][name] = sha
    sides = {}
    for s in steps:
        run_inputs = s.origin_inputs if s.origin_step_id and s.origin_inputs is not None else None
        sides[s.key] = StepSide(
            key=s.key,
            status=s.status,
            inputs=dict(run_inputs if run_inputs is not None else run.inputs) | (s.inputs or {}),
            output={"$blob": s.output_sha256} if s.output_sha256 else s.output,
            artifacts=artifacts.get(s.id, {}),
            cost_usd=Decimal(costs.get(s.origin_step_id or s.id) or 0),
            origin_step_id=s.origin_step_id,
            id=s.id,
        )
    return RunSide(
        id=run.id,
        workflow=workflow,
        status=run.status,
        inputs=dict(run.inputs),
        cost_usd=Decimal(run.cost_usd),
        parent_run_id=run.parent_run_id,
        forked_at=forked_at,
        steps=sides,
    )


def render(diff: RunDiff) -> str:
    """The diff as text for a terminal: one block per step that differs."""
    a, b = str(diff.a), str(diff.b)
    lines = [
        f"a  {a}  {diff.status[0]}  ${diff.cost_usd[0]:.6f}",
        f"b  {b}  {diff.status[1]}  ${diff.cost_usd[1]:.6f}",
        f"workflow {diff.workflow!r}: {diff.lineage}",
    ]
    if diff.inputs:
        lines.append("run inputs")
        lines += _changes(diff.inputs, "  ")
    width = max((len(s.key) for s in diff.steps), default=4)
    for s in diff.steps:
        head = f"{s.key:<{width}}  "
        if s.verdict == "same":
            lines.append(head + ("same (reused, not run again)" if s.reused else "same"))
            continue
        if s.verdict in ("only_a", "only_b"):
            lines.append(head + f"only in {s.verdict[-1]}")
            continue
        status = s.status[0] if s.status[0] == s.status[1] else f"{s.status[0]} -> {s.status[1]}"
        lines.append(head + f"changed ({status})")
        for name, changes in (
            ("inputs", s.inputs),
            ("output", s.output),
            ("artifacts", s.artifacts),
        ):
            if changes:
                lines.append(f"    {name}")
                lines += _changes(changes, "      ", sha=name == "artifacts")
        if s.cost_usd[0] != s.cost_usd[1]:
            lines.append(f"    cost  ${s.cost_usd[0]:.6f} -> ${s.cost_usd[1]:.6f}")
    return "\n".join(lines)


def _changes(changes: list[Change], indent: str, *, sha: bool = False) -> list[str]:
    show = _short_sha if sha else _show
    lines = []
    for c in changes[:MAX_CHANGES]:
        where = c.path or "(the whole value)"
        if c.kind == "added":
            lines.append(f"{indent}+ {where}: {show(c.after)}")
        elif c.kind == "removed":
            lines.append(f"{indent}- {where}: {show(c.before)}")
        else:
            lines.append(f"{indent}~ {where}: {show(c.before)} -> {show(c.after)}")
    if len(changes) > MAX_CHANGES:
        lines.append(f"{indent}... and {len(changes) - MAX_CHANGES} more")
    return lines


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOW_MAX else text[: SHOW_MAX - 3] + "..."


def _short_sha(value: Any) -> str:
    return f"sha256 {str(value)[:12]}" if isinstance(value, str) else _show(value)
