"""Step functions used by the integration tests (loaded by the worker processes).

Steps that must prove "ran once" or "resumed" append a line to a file in ``trace_dir``,
an input every such test passes: the file is the outside witness of each execution.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from worker.context import StepContext
from worker.errors import NonRetryableError
from worker.registry import step


def trace_lines(trace_dir: Path) -> list[str]:
    """Every line the steps wrote, in order."""
    path = trace_dir / "trace.log"
    return path.read_text().splitlines() if path.exists() else []


def _trace(trace_dir: str | None, line: str) -> None:
    if trace_dir:
        with open(Path(trace_dir) / "trace.log", "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


@step("t.increment")
def increment(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """x + 1, where x is the run's ``x`` or the upstream step's output."""
    upstream = [v["x"] for k, v in inputs.items() if isinstance(v, dict) and "x" in v]
    x = upstream[0] if upstream else inputs["x"]
    _trace(inputs.get("trace_dir"), f"increment {ctx.step_key} {ctx.attempt}")
    return {"x": x + 1}


@step("t.item")
def item(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """One branch of a fan-out: returns its own key."""
    return {"item": ctx.step_key}


@step("t.join")
def join(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """Collects every upstream output."""
    _trace(inputs.get("trace_dir"), f"join {ctx.attempt}")
    items = sorted(v["item"] for v in inputs.values() if isinstance(v, dict) and "item" in v)
    return {"items": items}


@step("t.flaky")
def flaky(ctx: StepContext, fail_times: int = 0, trace_dir: str | None = None) -> dict[str, Any]:
    """Fails its first ``fail_times`` attempts with a retryable error."""
    _trace(trace_dir, f"flaky {ctx.attempt} {time.time()}")
    if ctx.attempt <= fail_times:
        raise ConnectionError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempts": ctx.attempt}


@step("t.fatal")
def fatal(ctx: StepContext, trace_dir: str | None = None, seconds: float = 0.0) -> dict[str, Any]:
    """Fails with a non-retryable error (after ``seconds``)."""
    _trace(trace_dir, f"fatal {ctx.attempt}")
    time.sleep(seconds)
    raise NonRetryableError("the input can never work")


@step("t.sleep")
def sleep(ctx: StepContext, seconds: float = 1.0, trace_dir: str | None = None) -> dict[str, Any]:
    """Sleeps (a hung call, for timeouts)."""
    _trace(trace_dir, f"sleep {ctx.step_key} {ctx.attempt}")
    time.sleep(seconds)
    return {"slept": seconds}


@step("t.loop")
def loop(
    ctx: StepContext,
    iterations: int = 5,
    pause_s: float = 0.2,
    trace_dir: str | None = None,
) -> dict[str, Any]:
    """Works in iterations; pays for each and checkpoints after each; resumes where it was."""
    state = ctx.resume_state or {"done": 0}
    _trace(trace_dir, f"loop start attempt={ctx.attempt} from={state['done']}")
    for i in range(state["done"], iterations):
        time.sleep(pause_s)
        ctx.cost("openai", "gpt-test", input_tokens=100, output_tokens=10, usd="0.01")
        ctx.message("assistant", f"iteration {i}")
        _trace(trace_dir, f"loop iteration {i} attempt={ctx.attempt}")
        ctx.checkpoint({"done": i + 1})
    return {"done": iterations, "attempt": ctx.attempt}


@step("t.watch_cancel")
def watch_cancel(ctx: StepContext, trace_dir: str | None = None) -> dict[str, Any]:
    """Runs until the run is cancelled (seen through the heartbeat), then ends."""
    _trace(trace_dir, "watch_cancel started")
    deadline = time.monotonic() + 60
    while not ctx.cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    _trace(trace_dir, f"watch_cancel saw cancelled={ctx.cancelled}")
    ctx.raise_if_stopped()
    return {"cancelled": False}


class _Zeros:
    """A file object of ``size`` deterministic bytes, never held in memory at once."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


@step("t.artifact")
def artifact(
    ctx: StepContext,
    name: str = "out.txt",
    text: str | None = None,
    size: int = 0,
    wait_for: str | None = None,
    trace_dir: str | None = None,
) -> dict[str, Any]:
    """Puts one artifact: ``text``, or ``size`` streamed bytes; reports memory growth."""
    _trace(trace_dir, f"artifact start {ctx.attempt}")
    if wait_for:
        deadline = time.monotonic() + 30
        while not Path(wait_for).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    before = _hwm_kb()
    source: Any = text.encode() if text is not None else _Zeros(size)
    key = ctx.artifacts.put(name, source, content_type="text/plain" if text else None)
    return {"key": key, "hwm_growth_kb": _hwm_kb() - before}


@step("t.read_artifact")
def read_artifact(ctx: StepContext, name: str = "out.txt", **_: Any) -> dict[str, Any]:
    """Reads an upstream artifact back, verified."""
    return {"text": ctx.artifacts.get(name, step="make").decode()}


@step("t.put_then_die")
def put_then_die(ctx: StepContext, trace_dir: str | None = None) -> dict[str, Any]:
    """Attempt 1 uploads an object and dies before committing; attempt 2 puts nothing."""
    _trace(trace_dir, f"put_then_die {ctx.attempt}")
    if ctx.attempt == 1:
        ctx.artifacts.put("orphan.bin", b"never committed")
        os.kill(os.getpid(), 9)
    return {"attempt": ctx.attempt}


@step("t.big_output")
def big_output(ctx: StepContext, n: int = 10_000) -> dict[str, Any]:
    """An output larger than a small inline limit."""
    return {"blob": "x" * n, "n": n}


@step("t.measure")
def measure(ctx: StepContext, big: dict[str, Any]) -> dict[str, Any]:
    """Receives the big output of step ``big`` transparently."""
    return {"length": len(big["blob"])}


@step("t.big_checkpoint")
def big_checkpoint(ctx: StepContext, n: int = 10_000) -> dict[str, Any]:
    """Attempt 1 checkpoints a large state and fails; attempt 2 resumes from it."""
    if ctx.attempt == 1:
        ctx.checkpoint({"big": "y" * n})
        raise ConnectionError("fail after the checkpoint")
    state = ctx.resume_state or {}
    return {"resumed_length": len(state.get("big", ""))}


from tests.support import bad_steps as _bad_steps  # noqa: E402, F401  (misbehaving steps)

# --- waits, approvals, signals, budgets ---------------------------------------------------


@step("t.approval")
def approval(
    ctx: StepContext,
    title: str = "Ship it?",
    timeout: float | None = None,
    on_timeout: str = "fail",
    escalate_to: str | None = None,
    catch: bool = False,
    trace_dir: str | None = None,
) -> dict[str, Any]:
    """Waits for an approval; traces each execution before and after the wait."""
    _trace(trace_dir, f"approval before {ctx.attempt}")
    try:
        decided = ctx.wait_for_approval(
            title,
            {"why": "a test"},
            timeout=timeout,
            on_timeout=on_timeout,
            escalate_to=escalate_to,
        )
    except Exception as exc:
        if not catch:
            raise
        _trace(trace_dir, f"approval refused {type(exc).__name__}")
        return {"refused": type(exc).__name__}
    _trace(trace_dir, f"approval after {ctx.attempt} {decided.by}")
    return {"approved_by": decided.by, "comment": decided.comment}


@step("t.signal")
def wait_signal(
    ctx: StepContext,
    name: str = "go",
    timeout: float | None = None,
    times: int = 1,
    trace_dir: str | None = None,
    hold: float = 0.0,
) -> dict[str, Any]:
    """Runs ``hold`` seconds, then waits for ``times`` signals ``name`` in a row; returns
    their payloads."""
    _trace(trace_dir, f"signal before {ctx.attempt}")
    time.sleep(hold)
    payloads = [ctx.wait_for_signal(name, timeout=timeout) for _ in range(times)]
    _trace(trace_dir, f"signal after {ctx.attempt}")
    return {"payloads": payloads}


@step("t.nap")
def nap(ctx: StepContext, seconds: float = 2.0, trace_dir: str | None = None) -> dict[str, Any]:
    """Sleeps durably, then waits for a signal: two waits replayed in order."""
    _trace(trace_dir, f"nap before {ctx.attempt} {time.time()}")
    ctx.sleep(seconds)
    _trace(trace_dir, f"nap slept {ctx.attempt} {time.time()}")
    payload = ctx.wait_for_signal("after-nap", timeout=60)
    _trace(trace_dir, f"nap after {ctx.attempt}")
    return {"payload": payload}


@step("t.spend")
def spend(
    ctx: StepContext, rounds: int = 5, usd: str = "1", trace_dir: str | None = None
) -> dict[str, Any]:
    """Spends ``usd`` and checkpoints, ``rounds`` times, resuming from its checkpoint."""
    done = (ctx.resume_state or {}).get("done", 0)
    _trace(trace_dir, f"spend start {ctx.attempt} at {done} left {ctx.budget_left}")
    for i in range(done, rounds):
        ctx.cost("llm", "model-x", input_tokens=10, usd=usd)
        ctx.checkpoint({"done": i + 1})
        _trace(trace_dir, f"spend round {i + 1}")
    return {"rounds": rounds}


@step("t.write")
def write(
    ctx: StepContext,
    topic: str = "",
    tone: str = "plain",
    trace_dir: str | None = None,
    **upstream: Any,
) -> dict[str, Any]:
    """A paid step of a chain: costs $0.01, writes an artifact, returns its text (made of
    the run's ``topic``, its own ``tone`` and the upstream step's text)."""
    _trace(trace_dir, f"write {ctx.step_key} {ctx.attempt}")
    before = [v["text"] for v in upstream.values() if isinstance(v, dict) and "text" in v]
    text = f"{ctx.step_key}({tone}):{topic}" + (f"<{before[0]}" if before else "")
    ctx.cost("llm", "model-x", input_tokens=len(text), usd="0.01")
    ctx.artifacts.put("note.txt", text.encode())
    return {"text": text, "length": len(text)}


@step("t.split")
def split(ctx: StepContext, n: int = 10, **_: Any) -> dict[str, Any]:
    """The list a map step maps over: 0 .. n-1."""
    return {"items": list(range(n))}


@step("t.square")
def square(
    ctx: StepContext, item: int, index: int, nap: float = 0.0, trace_dir: str | None = None
) -> dict[str, Any]:
    """A map element: records one cent (committed with its success) and returns item²."""
    _trace(trace_dir, f"square {index} {ctx.attempt}")
    if nap:
        time.sleep(nap)
    ctx.cost("llm", "model-x", usd="0.01")
    return {"index": index, "y": item * item}


@step("t.collect")
def collect(ctx: StepContext, each: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
    """A map's join: the element outputs, in order."""
    return {"n": len(each), "indexes": [e["index"] for e in each], "sum": sum(e["y"] for e in each)}


@step("t.parent")
def parent(
    ctx: StepContext,
    naps: list[float],
    workflow: str = "kid",
    fail_times: int = 0,
    trace_dir: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Starts one child run of ``workflow`` per nap and waits for each, in order."""
    _trace(trace_dir, f"parent {ctx.attempt}")
    children = [
        ctx.start_child(
            workflow,
            {"seconds": nap, "x": i, "fail_times": fail_times, "trace_dir": trace_dir},
            key=f"kid-{i}",
        )
        for i, nap in enumerate(naps)
    ]
    outputs = [ctx.wait_child(child) for child in children]
    return {"children": children, "outputs": outputs}


@step("t.logs")
def logs(ctx: StepContext, **_: Any) -> dict[str, Any]:
    """Logs through ctx.log and through a logger of its own module."""
    ctx.log.info("from ctx.log")
    logging.getLogger("user.steps").warning("from my own logger")
    return {}


@step("t.ratelimited")
def ratelimited(
    ctx: StepContext, calls: int = 10, tokens: int = 0, trace_dir: str | None = None, **_: Any
) -> dict[str, Any]:
    """Calls a rate-limited API ``calls`` times; one trace line (its time) per call."""
    waited = 0.0
    for _ in range(calls):
        waited += ctx.rate_limit("test:api", tokens=tokens)
        _trace(trace_dir, f"call {time.time()}")
    return {"waited": waited}
