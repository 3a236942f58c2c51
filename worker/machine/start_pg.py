"""A run's start in ONE round trip on PostgreSQL: the run row, its start event, its steps
and its edges, as one statement of data-modifying CTEs.

The steps and the edges travel as two JSON arrays, each one row per element, turned into
rows by ``jsonb_populate_recordset``: one statement whatever the run's size, prepared
once. Idempotency is the run's unique keys (its id; its tenant and idempotency key): a
start that loses to an existing run inserts nothing at all, and the caller returns that
run. Foreign keys between the four inserts are checked at the end of the statement.

SQLite runs the same inserts as separate statements (``start._insert_run``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import Enum
from typing import Any, cast

from sqlalchemy import Integer, Table, Uuid, bindparam, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from db.models import StepEdge, WorkflowRun, WorkflowStep
from db.prepared import Prepared
from db.types import JSONValue

_RUNS = cast(Table, WorkflowRun.__table__)
_STEPS = cast(Table, WorkflowStep.__table__)
_EDGES = cast(Table, StepEdge.__table__)
#: The run's columns a start sets (every other one has its database default).
_RUN_COLUMNS = (
    "id",
    "tenant_id",
    "project_id",
    "definition_id",
    "status",
    "inputs",
    "idempotency_key",
    "budget_usd",
    "parent_run_id",
    "parent_step_id",
    "trace_context",
    "steps_left",
    "cost_usd",
    "created_at",
    "updated_at",
)
_STEP_COLUMNS = tuple(c.name for c in _STEPS.c)
_EDGE_COLUMNS = tuple(c.name for c in _EDGES.c)
#: What SQLAlchemy would fill in for a column a planned row leaves out.
_STEP_DEFAULTS = {
    c.name: c.default.arg for c in _STEPS.c if isinstance(c.default, ScalarElementColumnDefault)
}


def _quoted(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


_SQL = """
WITH run AS (
    INSERT INTO workflow_runs ({run_columns})
    VALUES ({run_values})
    ON CONFLICT DO NOTHING
 RETURNING id
), logged AS (
    INSERT INTO run_events (id, run_id, kind, step_id, attempt, data, created_at)
    SELECT :event_id, id, 'start_run', NULL, NULL, :event_data, :created_at FROM run
 RETURNING id
), steps AS (
    INSERT INTO workflow_steps ({step_columns})
    SELECT {step_columns} FROM jsonb_populate_recordset(NULL::workflow_steps, :steps)
     WHERE EXISTS (SELECT 1 FROM run)
 RETURNING id
), edges AS (
    INSERT INTO step_edges ({edge_columns})
    SELECT {edge_columns} FROM jsonb_populate_recordset(NULL::step_edges, :edges)
     WHERE EXISTS (SELECT 1 FROM run)
 RETURNING id
)
SELECT id, (SELECT count(*) FROM logged) AS logged, (SELECT count(*) FROM steps) AS steps,
       (SELECT count(*) FROM edges) AS edges
  FROM run
"""

STATEMENT = Prepared(
    text(
        _SQL.format(
            run_columns=", ".join(_RUN_COLUMNS),
            run_values=", ".join(":" + c for c in _RUN_COLUMNS),
            step_columns=_quoted(_STEP_COLUMNS),
            edge_columns=_quoted(_EDGE_COLUMNS),
        )
    )
    .bindparams(
        *(bindparam(c, type_=_RUNS.c[c].type) for c in _RUN_COLUMNS),
        bindparam("event_id", type_=Uuid()),
        bindparam("event_data", type_=JSONValue),
        bindparam("steps", type_=JSONValue),
        bindparam("edges", type_=JSONValue),
    )
    .columns(id=Uuid(), steps=Integer(), edges=Integer())
)


def insert_run(
    session: Session,
    run: dict[str, Any],
    event_id: uuid.UUID,
    event_data: dict[str, Any],
    steps: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    *,
    alone: bool = False,
) -> bool:
    """Insert the run (its ``_RUN_COLUMNS``), its start event, ``steps`` and ``edges`` (rows
    as ``start.plan_steps`` makes them); False, and nothing written, when a run with the
    same id or idempotency key exists. ``alone``: the statement commits itself when it
    opens its transaction (``Prepared.execute``)."""
    rows = STATEMENT.execute(
        session.connection(),
        run
        | {
            "event_id": event_id,
            "event_data": event_data,
            "steps": [_json_row(_STEP_DEFAULTS | row) for row in steps],
            "edges": [_json_row(row) for row in edges],
        },
        alone=alone,
    )
    if not rows:
        return False
    # A start that inserted its run inserted every row with it: the steps' and edges'
    # INSERTs have no ON CONFLICT, so they insert all or fail the statement. Checked all
    # the same (a check that stays under ``python -O``, unlike an assert): in a
    # transaction, raising rolls the start back; a statement sent alone has committed.
    if (rows[0].steps, rows[0].edges) != (len(steps), len(edges)):
        raise RuntimeError(
            f"start of run {run['id']}: inserted {rows[0].steps} steps and {rows[0].edges} "
            f"edges of {len(steps)} and {len(edges)}"
        )
    return True


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as JSON values that ``jsonb_populate_recordset`` casts back to
    the columns' types (ids and times as text; JSON columns as they are)."""
    return {name: _json_value(value) for name, value in row.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: cairn stores timezone-aware times")
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
