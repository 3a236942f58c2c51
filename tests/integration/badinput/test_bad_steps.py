"""A runtime corpus of misbehaving steps run by a real worker.

Each hands cairn a value the database would refuse. The run must end failed with the real
cause recorded (not a lease expiry after the reaper's retries), the cost recorded before
the bad call kept, and the same worker must go on to run a good run.
"""

from __future__ import annotations

from decimal import Decimal

from db.models import CostRecord
from tests.support.bad_steps import MISDEEDS
from tests.support.queries import count
from tests.support.stack import Stack
from worker.client import Client

#: The recorded error of each misbehaviour: its type and words of its message.
EXPECTED = {
    "output_nul_key": ("DefinitionError", "output['a\\x00b']: contains a NUL"),
    "output_surrogate": ("DefinitionError", "output.x[1]: contains a lone surrogate"),
    "output_surrogate_key": ("DefinitionError", "output['\\udc80']: contains a lone surrogate"),
    "cost_provider_nul": ("DefinitionError", "cost.provider: contains a NUL"),
    "cost_model_too_long": ("DefinitionError", "cost.model: is 201 characters; at most 200"),
    "cost_usd_huge": ("DefinitionError", "cost.usd: must be below"),
    "cost_usd_nan": ("DefinitionError", "cost.usd: must be a finite number"),
    "content_type_too_long": ("DefinitionError", "artifact.content_type: is 256 characters"),
    "message_nul": ("DefinitionError", "message.content: contains a NUL"),
    "exception_nul": ("RuntimeError", "boom\\x00 \\udc80 xxx"),
}


def test_the_corpus_covers_every_misdeed() -> None:
    assert set(EXPECTED) == set(MISDEEDS)


def spec(kind: str) -> dict[str, object]:
    return {"name": f"bad-{kind.replace('_', '-')}", "steps": [{"key": "s", "task": "t.misbehave"}]}


def test_each_misbehaving_step_fails_with_its_real_cause(stack: Stack, client: Client) -> None:
    stack.start_worker()
    for kind, (error_type, words) in EXPECTED.items():
        run_id = client.start_run(spec=spec(kind), inputs={"kind": kind})
        view = client.wait(run_id, timeout=60)
        step = view.step("s")
        assert (view.status, step.status, step.attempt) == ("failed", "failed", 1), kind
        assert step.error is not None, kind
        assert step.error["type"] == error_type, (kind, step.error)
        assert words in step.error["message"], (kind, step.error["message"])
        costs = client.costs(run_id)
        assert costs.total_usd == Decimal("0.5"), kind
    assert count(client.runtime.engine, CostRecord) == len(EXPECTED)
    sanitised = client.get_run(client.list_runs(workflow="bad-exception-nul", limit=1)[0].id).step(
        "s"
    )
    assert sanitised.error is not None
    assert "NUL" in sanitised.error["sanitised"]
    assert len(sanitised.error["message"]) <= 2000
    # the same worker still serves a good run
    good = client.start_run(spec={"name": "good", "steps": [{"key": "a", "task": "t.item"}]})
    assert client.wait(good, timeout=60).status == "succeeded"
