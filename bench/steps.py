"""Step functions of the benchmark workflows (loaded by the cairn workers)."""

from __future__ import annotations

import time
from typing import Any

from worker.context import StepContext
from worker.registry import step


@step("bench.noop")
def noop(ctx: StepContext, **_: Any) -> dict[str, Any]:
    """Does nothing: what is measured is cairn's own cost per step."""
    return {}


@step("bench.sleep")
def sleep(ctx: StepContext, seconds: float = 30.0, **_: Any) -> dict[str, Any]:
    """A long step to kill a worker under."""
    time.sleep(seconds)
    return {}


@step("bench.items")
def items(ctx: StepContext, n: int = 100, **_: Any) -> dict[str, Any]:
    """The list a map step maps over: 0 .. n-1."""
    return {"items": list(range(n))}
