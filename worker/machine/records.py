"""What an attempt records besides its output: costs, messages, artifact rows.

They wait in :class:`Records` until the attempt's next commit (a checkpoint, its
completion or its failure) writes them, fenced, with unique keys (step, attempt, seq).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from db.models import Artifact, CostRecord, Message
from worker.machine.lease import Fence


@dataclass(frozen=True, slots=True)
class CostEntry:
    """A cost recorded by a step, waiting for the next checkpoint or completion."""

    seq: int
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    usd: Decimal
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessageEntry:
    """A conversation message recorded by a step, waiting like a cost."""

    seq: int
    role: str
    content: str
    tool_calls: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    """An object an attempt uploaded; its row is written with the next commit."""

    name: str
    key: str
    size: int
    sha256: str
    content_type: str | None = None


@dataclass(slots=True)
class Records:
    """Costs, messages and artifacts an attempt recorded since its last commit."""

    costs: list[CostEntry] = field(default_factory=list)
    messages: list[MessageEntry] = field(default_factory=list)
    artifacts: list[ArtifactEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether anything waits to be written."""
        return bool(self.costs or self.messages or self.artifacts)

    def usd(self) -> Decimal:
        """Money in these costs."""
        return sum((c.usd for c in self.costs), Decimal(0))


def write_records(session: Session, fence: Fence, records: Records, now: datetime) -> Decimal:
    """Insert an attempt's pending costs, messages and artifact rows; return the money.

    An artifact name written again (by a later attempt, or twice by one) points its row
    at the newest object; the older object becomes an orphan that retention deletes.
    """
    base = {"run_id": fence.run_id, "step_id": fence.step_id, "attempt": fence.attempt}
    if records.costs:
        session.connection().execute(
            insert(CostRecord),
            [
                base
                | {
                    "seq": c.seq,
                    "provider": c.provider,
                    "model": c.model,
                    "input_tokens": c.input_tokens,
                    "output_tokens": c.output_tokens,
                    "usd": c.usd,
                    "meta": c.meta,
                    "created_at": now,
                }
                for c in records.costs
            ],
        )
    if records.messages:
        session.connection().execute(
            insert(Message),
            [
                base
                | {
                    "seq": m.seq,
                    "role": m.role,
                    "content": m.content,
                    "tool_calls": m.tool_calls,
                    "created_at": now,
                }
                for m in records.messages
            ],
        )
    if records.artifacts:
        names = [a.name for a in records.artifacts]
        session.connection().execute(
            delete(Artifact).where(
                Artifact.run_id == fence.run_id,
                Artifact.step_id == fence.step_id,
                Artifact.name.in_(names),
            )
        )
        latest = {a.name: a for a in records.artifacts}  # the last put of a name wins
        session.connection().execute(
            insert(Artifact),
            [
                base
                | {
                    "name": a.name,
                    "key": a.key,
                    "size": a.size,
                    "sha256": a.sha256,
                    "content_type": a.content_type,
                    "created_at": now,
                }
                for a in latest.values()
            ],
        )
    return records.usd()
