"""Example step functions: the demo workflow in ``examples/report.yaml`` uses them.

They simulate an LLM research pipeline without any network: fetch sources (fan-out),
summarise each with a checkpointing loop that records token costs, then combine (join).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from worker.context import StepContext
from worker.registry import step

#: Pretend prices (USD per 1k tokens) so the demo has costs to show.
PRICE_IN, PRICE_OUT = 0.0005, 0.0015


@step("examples.fetch")
def fetch(ctx: StepContext, topic: str = "durable workflows", **_: Any) -> dict[str, Any]:
    """Fetch one source about the topic (simulated: a deterministic text)."""
    source = ctx.step_key
    words = [hashlib.sha256(f"{topic}:{source}:{i}".encode()).hexdigest()[:6] for i in range(200)]
    time.sleep(0.2)
    return {"source": source, "text": " ".join(words)}


@step("examples.summarise")
def summarise(ctx: StepContext, chunks: int = 5, **inputs: Any) -> dict[str, Any]:
    """Summarise every fetched source chunk by chunk; checkpoint after each chunk.

    A crash resumes at the next chunk: chunks already paid for are not paid again.
    """
    texts = [v["text"] for v in inputs.values() if isinstance(v, dict) and "text" in v]
    state = ctx.resume_state or {"done": 0, "notes": []}
    for i in range(state["done"], chunks):
        tokens_in = sum(len(t) for t in texts) // chunks // 4
        tokens_out = 60
        time.sleep(0.3)  # the "LLM call"
        ctx.cost(
            "demo-llm",
            "tiny-1",
            tokens_in,
            tokens_out,
            usd=round(tokens_in / 1000 * PRICE_IN + tokens_out / 1000 * PRICE_OUT, 8),
        )
        ctx.message("assistant", f"chunk {i}: {len(texts)} sources, {tokens_in} tokens")
        state = {"done": i + 1, "notes": [*state["notes"], f"note {i}"]}
        ctx.checkpoint(state)
    return {"notes": state["notes"], "sources": len(texts)}


@step("examples.combine")
def combine(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """Join: combine the summary into a report."""
    summary = inputs.get("summarise", {})
    notes = summary.get("notes", [])
    report = "# Report\n\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    ctx.artifacts.put("report.md", report.encode(), content_type="text/markdown")
    return {"lines": len(notes), "artifact": "report.md"}


@step("examples.flaky")
def flaky(ctx: StepContext, fail_times: int = 1, **_: Any) -> dict[str, Any]:
    """Fails its first attempts (a rate-limited API), then succeeds: shows retries."""
    if ctx.attempt <= fail_times:
        raise ConnectionError(f"simulated rate limit on attempt {ctx.attempt}")
    return {"attempts": ctx.attempt}


@step("examples.draft")
def draft(
    ctx: StepContext, topic: str = "durable workflows", sections: int = 5, **_: Any
) -> dict[str, Any]:
    """Write a draft section by section, paying for each; checkpoint after each.

    Past the run's budget the checkpoint pauses the run: the step resumes from here once
    a new budget is approved, and sections already paid for are not paid again.
    """
    state = ctx.resume_state or {"done": 0, "sections": []}
    for i in range(state["done"], sections):
        time.sleep(0.2)  # the "LLM call"
        ctx.cost("demo-llm", "tiny-1", 400, 300, usd="0.30")
        text = f"Section {i + 1} on {topic}."
        state = {"done": i + 1, "sections": [*state["sections"], text]}
        ctx.checkpoint(state)
    return {"sections": state["sections"], "budget_left": str(ctx.budget_left)}


@step("examples.publish")
def publish(ctx: StepContext, **inputs: Any) -> dict[str, Any]:
    """Publish the approved draft as an artifact."""
    sections = inputs.get("draft", {}).get("sections", [])
    ctx.artifacts.put("draft.md", "\n\n".join(sections).encode(), content_type="text/markdown")
    return {"published": len(sections)}
