"""The chaos workload's step, loaded by the worker processes (``CAIRN_STEP_MODULES``).

Every unit of work leaves effects that can be counted exactly afterwards: one cost whose
``meta.unit`` names the unit, one message ``unit <i>``, one artifact ``unit-<i>.txt`` when
asked, and one checkpoint ``{"i": i + 1}``, all committed together by the checkpoint. A
unit seen twice in the database is an effect committed twice.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from worker.context import StepContext
from worker.registry import step

#: What each unit costs: a run's roll-up must be exactly units x steps x this.
USD_PER_UNIT = Decimal("0.001")
PROVIDER = "chaos"


def unit_bytes(run_id: str, step_key: str, unit: int) -> bytes:
    """The content of a unit's artifact, so the stored object can be checked byte for byte."""
    return f"run {run_id} step {step_key} unit {unit}\n".encode()


@step("chaos.units")
def work_units(
    ctx: StepContext,
    units: int = 5,
    pause_s: float = 0.1,
    artifacts: bool = False,
    **upstream: Any,
) -> dict[str, Any]:
    """Works through ``units`` units from the last checkpoint, recording each unit's effects."""
    start = int((ctx.resume_state or {}).get("i", 0))
    for i in range(start, units):
        time.sleep(pause_s)
        ctx.cost(provider=PROVIDER, model="m", usd=USD_PER_UNIT, meta={"unit": i})
        ctx.message("assistant", f"unit {i}")
        if artifacts:
            data = unit_bytes(ctx.run_id, ctx.step_key, i)
            ctx.artifacts.put(f"unit-{i}.txt", data, content_type="text/plain")
        ctx.checkpoint({"i": i + 1})
    return {"units": units, "resumed_from": start, "attempt": ctx.attempt}
