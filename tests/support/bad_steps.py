"""Misbehaving steps: each records a good cost, then hands cairn something unstorable.

The runtime corpus of tests/integration/badinput/test_bad_steps.py runs them; the real
cause must be recorded and the good cost kept.
"""

from __future__ import annotations

from typing import Any

from worker.context import StepContext
from worker.registry import step

#: What each kind of misbehaviour does, after one good cost of $0.5.
MISDEEDS = {
    "output_nul_key": lambda ctx: {"a\x00b": 1},
    "output_surrogate": lambda ctx: {"x": ["ok", "\udc80"]},
    "output_surrogate_key": lambda ctx: {"\udc80": 1},
    "cost_provider_nul": lambda ctx: ctx.cost("open\x00ai", "m", usd=1),
    "cost_model_too_long": lambda ctx: ctx.cost("p", "m" * 201, usd=1),
    "cost_usd_huge": lambda ctx: ctx.cost("p", "m", usd=1e30),
    "cost_usd_nan": lambda ctx: ctx.cost("p", "m", usd=float("nan")),
    "content_type_too_long": lambda ctx: ctx.artifacts.put("f.txt", b"x", "t/" + "x" * 254),
    "message_nul": lambda ctx: ctx.message("user", "hi\x00"),
    "exception_nul": lambda ctx: _raise(RuntimeError("boom\x00 \udc80 " + "x" * 5000)),
}


def _raise(exc: Exception) -> Any:
    raise exc


@step("t.misbehave")
def misbehave(ctx: StepContext, kind: str) -> dict[str, Any] | None:
    """Record a good cost, then do ``MISDEEDS[kind]``."""
    ctx.cost("good", "model", input_tokens=3, output_tokens=4, usd="0.5")
    result = MISDEEDS[kind](ctx)
    return result if isinstance(result, dict) else {"done": True}


@step("t.leak")
def leak(ctx: StepContext, secret: str) -> dict[str, Any]:
    """Raise an error that quotes a secret, and log it: the worker's log must mask it."""
    ctx.log.warning("connecting to postgresql://u:%s@db/x", secret)
    raise ConnectionError(f"cannot reach s3://ak:{secret}@store/bucket")
