"""Bad input through every door: the Client, ``cairn start``, ``cairn definitions
register`` and the ``cairn.start_run`` task run by a real worker.

Each case is refused with one line naming the field, nothing is written in any table,
and after the corpus a good run still succeeds on the same worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support.queries import all_counts
from tests.support.stack import ROOT, Stack, stack_env
from worker.client import Client
from worker.errors import DefinitionError
from worker.settings import Settings

GOOD_STEP = {"key": "a", "task": "t.item"}


def spec(step: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"name": "doors", "steps": [{**GOOD_STEP, **(step or {})}], **top}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"n": value}
    return value


DEEP_TEXT = '{"name": "doors", "steps": ' + "[" * 10_000 + "]" * 10_000 + "}"


@dataclass(frozen=True)
class Case:
    """One bad input: the field it must be refused by, and how each door is given it.

    ``request`` are keyword arguments of ``Client.start_run`` and of the task; ``tenant``
    is the Client's tenant (the task's ``tenant`` argument); ``spec`` goes to every door
    that takes a definition (as JSON text to the CLI). ``cli`` are extra ``cairn start``
    arguments (bytes for what only argv can carry), None when the CLI cannot say it.
    """

    name: str
    field: str
    spec: dict[str, Any] | str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    tenant: str | None = None
    cli: list[str | bytes] | None = None
    task: bool = True


CASES = [
    # --- the definition -------------------------------------------------------------
    Case(
        "max_attempts string", "steps[0].retry.max_attempts", spec({"retry": {"max_attempts": "3"}})
    ),
    Case(
        "max_attempts bool", "steps[0].retry.max_attempts", spec({"retry": {"max_attempts": True}})
    ),
    Case("timeout_s string", "steps[0].timeout_s", spec({"timeout_s": "10"})),
    Case("description NUL", "description", spec(description="a\x00b")),
    Case("description surrogate", "description", spec(description="a\udc80")),
    Case(
        "non_retryable NUL",
        "steps[0].retry.non_retryable",
        spec({"retry": {"non_retryable": ["X\x00"]}}),
    ),
    Case("definition 10,000 deep", "definition", DEEP_TEXT),
    # --- the request ----------------------------------------------------------------
    Case("project NUL", "project", request={"project": "p\x00"}),
    Case(
        "project surrogate", "project", request={"project": "p\udc80"}, cli=["--project", b"p\xff"]
    ),
    Case(
        "project 1,000 characters",
        "project",
        request={"project": "p" * 1000},
        cli=["--project", "p" * 1000],
    ),
    Case("project empty", "project", request={"project": ""}, cli=["--project", ""]),
    Case("tenant NUL", "tenant", tenant="t\x00"),
    Case("tenant surrogate", "tenant", tenant="t\udc80"),
    Case("tenant 1,000 characters", "tenant", tenant="t" * 1000),
    Case("idempotency key NUL", "idempotency_key", request={"idempotency_key": "k\x00"}),
    Case(
        "idempotency key surrogate",
        "idempotency_key",
        request={"idempotency_key": "k\udc80"},
        cli=["-k", b"k\xff"],
    ),
    Case(
        "idempotency key 256",
        "idempotency_key",
        request={"idempotency_key": "k" * 256},
        cli=["-k", "k" * 256],
    ),
    Case(
        "idempotency key empty", "idempotency_key", request={"idempotency_key": ""}, cli=["-k", ""]
    ),
    Case(
        "version abc",
        "version",
        request={"workflow": "doors", "version": "abc"},
        cli=["doors", "--version", "abc"],
    ),
    Case("version huge", "version", request={"workflow": "doors", "version": 2**40}),
    Case("budget negative", "budget_usd", request={"budget_usd": Decimal(-1)}),
    Case("budget NaN", "budget_usd", request={"budget_usd": Decimal("NaN")}),
    Case("budget Infinity", "budget_usd", request={"budget_usd": Decimal("Infinity")}),
    Case("budget 1e30", "budget_usd", request={"budget_usd": Decimal("1e30")}),
    Case(
        "inputs 10,000 deep",
        "inputs",
        request={"inputs": {"x": nested(10_000)}},
        cli=["--inputs-file", "deep"],
        task=False,
    ),
    Case("inputs 100 deep", "inputs", request={"inputs": {"x": nested(100)}}),
    Case("inputs surrogate", "inputs.x", request={"inputs": {"x": "\udc80"}}),
    Case("inputs key NUL", "inputs['a\\x00']", request={"inputs": {"a\x00": 1}}),
    Case("run id malformed", "run_id", request={"run_id": "nope"}),
]


def client_start(client: Client, case: Case) -> None:
    kwargs = dict(case.request)
    if "workflow" not in kwargs:
        kwargs["spec"] = case.spec or spec()
    if case.tenant is not None:
        with Client(client.settings, tenant=case.tenant) as other:
            other.start_run(**kwargs)
        return
    client.start_run(**kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_client_refuses_naming_the_field(client: Client, case: Case) -> None:
    before = all_counts(client.runtime.engine)
    with pytest.raises(DefinitionError) as caught:
        client_start(client, case)
    assert caught.value.field.startswith(case.field)
    assert all_counts(client.runtime.engine) == before == dict.fromkeys(before, 0)


SPEC_CASES = [c for c in CASES if c.spec is not None]


@pytest.mark.parametrize("case", SPEC_CASES, ids=[c.name for c in SPEC_CASES])
def test_client_register_refuses_naming_the_field(client: Client, case: Case) -> None:
    with pytest.raises(DefinitionError) as caught:
        client.register_definition(case.spec or spec())
    assert caught.value.field.startswith(case.field)
    assert sum(all_counts(client.runtime.engine).values()) == 0


def cairn(settings: Settings, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "cairn"), *args],
        cwd=ROOT,
        env=stack_env(settings),
        capture_output=True,
        timeout=60,
        check=False,
    )


def spec_file(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "wf.json"
    body = case.spec if isinstance(case.spec, str) else json.dumps(case.spec or spec())
    path.write_text(body, encoding="utf-8", errors="surrogatepass")
    return path


def assert_one_line(result: subprocess.CompletedProcess[bytes], field: str) -> None:
    err = result.stderr.decode("utf-8", "replace").strip()
    assert result.returncode in (1, 2), err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    assert field in err, err
    assert "Traceback" not in err


CLI_CASES = [c for c in CASES if c.spec is not None or c.cli is not None]


# Each case is a CLI process that refuses before it writes; SQLite adds nothing but time
# (about a minute of the suite's 30).
@pytest.mark.parametrize("backend", ["postgresql"])
def test_cairn_start_and_register_refuse_in_one_line(
    stack_settings: Settings, tmp_path: Path
) -> None:
    engine_client = Client(stack_settings)
    (tmp_path / "deep").write_text('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}")
    try:
        for case in CLI_CASES:
            if case.spec is not None:
                path = str(spec_file(tmp_path, case))
                assert_one_line(cairn(stack_settings, "start", path), case.field)
                assert_one_line(cairn(stack_settings, "definitions", "register", path), case.field)
            if case.cli is not None:
                args = [
                    a if isinstance(a, bytes) or a != "deep" else str(tmp_path / "deep")
                    for a in case.cli
                ]
                if args[0] != "doors":
                    args = [str(spec_file(tmp_path, Case("good", ""))), *args]
                field = "--version" if case.name == "version abc" else case.field
                field = "--inputs-file" if case.name.startswith("inputs 10,000") else field
                assert_one_line(cairn(stack_settings, "start", *args), field)
            assert sum(all_counts(engine_client.runtime.engine).values()) == 0, case.name
        for bad_id in ("status", "watch", "cancel", "steps", "costs", "events", "retry"):
            assert_one_line(cairn(stack_settings, bad_id, "not-a-run"), "run_id")
    finally:
        engine_client.close()


def test_the_start_run_task_refuses_and_the_worker_serves_on(stack: Stack, client: Client) -> None:
    worker = stack.start_worker()
    app = stack.app
    for case in CASES:
        if not case.task:
            continue
        kwargs: dict[str, Any] = {
            k: (str(v) if isinstance(v, Decimal) else v) for k, v in case.request.items()
        }
        if "workflow" not in kwargs:
            kwargs["spec"] = case.spec or spec()
        if case.tenant is not None:
            kwargs["tenant"] = case.tenant
        app.send_task("cairn.start_run", kwargs=kwargs, queue="cairn")
    good = uuid.UUID("0190a5b4-0000-7000-8000-0000000000aa")
    app.send_task("cairn.start_run", kwargs={"spec": spec(), "run_id": str(good)}, queue="cairn")
    deadline = time.monotonic() + 60
    while True:
        try:
            view = client.wait(good, timeout=30)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert view.status == "succeeded"
    counts = all_counts(client.runtime.engine)
    assert counts["workflow_runs"] == 1
    assert counts["workflow_steps"] == 1
    log = worker.log.read_text(errors="replace")
    refusals = [line for line in log.splitlines() if "start_run refused" in line]
    assert len(refusals) == sum(c.task for c in CASES), "\n".join(refusals)
    for case in CASES:
        if case.task:
            assert any(f"refused: {case.field}" in line for line in refusals), case.name
    assert "Traceback" not in log
