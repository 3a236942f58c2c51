"""The client end to end (retry, list, costs) and cairn.start_run sent by name from a
process that cannot import cairn."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

from db.models import WorkflowRun
from tests.support import servers
from tests.support.queries import all_counts, count
from tests.support.stack import Stack
from tests.support.steps import trace_lines
from worker.client import Client

FLAKY_CHAIN = {
    "name": "retryable",
    "steps": [
        {"key": "a", "task": "t.increment"},
        {"key": "b", "task": "t.flaky", "after": ["a"]},
        {"key": "c", "task": "t.increment", "after": ["a"]},
    ],
}


def test_retry_reruns_only_the_failed_steps(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker()
    run_id = client.start_run(
        spec=FLAKY_CHAIN, inputs={"x": 1, "fail_times": 1, "trace_dir": str(trace_dir)}
    )
    failed = client.wait(run_id, timeout=30)
    assert failed.status == "failed"
    assert failed.step("a").status == "succeeded"
    assert failed.step("b").status == "failed"

    assert client.retry(run_id) >= 1
    view = client.wait(run_id, timeout=30)
    assert view.status == "succeeded", view.error
    assert view.step("b").attempt == 2
    lines = trace_lines(trace_dir)
    assert lines.count("increment a 1") == 1  # the succeeded step was not re-run
    assert sum(line.startswith("flaky ") for line in lines) == 2


def test_list_runs_and_costs(stack: Stack, client: Client, trace_dir: Path) -> None:
    stack.start_worker()
    spec = {"name": "paid", "steps": [{"key": "work", "task": "t.loop"}]}
    first = client.start_run(spec=spec, inputs={"iterations": 3, "pause_s": 0.01})
    second = client.start_run(spec=FLAKY_CHAIN, inputs={"x": 1, "fail_times": 5})
    client.wait(first, timeout=30)
    client.wait(second, timeout=30)
    assert [r.id for r in client.list_runs()] == [second, first]
    assert [r.id for r in client.list_runs(status="failed")] == [second]
    assert [r.workflow for r in client.list_runs(workflow="paid")] == ["paid"]
    assert client.list_runs(limit=1)[0].id == second

    costs = client.costs(first)
    assert str(costs.total_usd.normalize()) == "0.03"
    assert [(s.key, s.input_tokens, s.output_tokens) for s in costs.steps] == [("work", 300, 30)]
    (model,) = costs.by_model
    assert (model.provider, model.model, model.records) == ("openai", "gpt-test", 3)


def test_start_run_by_name_from_a_process_without_cairn(
    stack: Stack, client: Client, tmp_path: Path
) -> None:
    stack.start_worker()
    site = sysconfig.get_paths()["purelib"]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.append({site!r})  # celery and its deps only: -S skips cairn's .pth
        try:
            import worker  # noqa
        except ImportError:
            pass
        else:
            raise SystemExit("cairn is importable; the test would prove nothing")
        from celery import Celery
        app = Celery(broker={servers.REDIS_URL!r})
        app.conf.task_serializer = "json"
        spec = {{"name": "polyglot", "steps": [{{"key": "a", "task": "t.increment"}}]}}
        good = {{"tenant": "default", "spec": spec, "inputs": {{"x": 1}},
                 "idempotency_key": "from-elsewhere"}}
        for _ in range(2):  # the same message twice: one run
            app.send_task("cairn.start_run", kwargs=good, queue="cairn")
        app.send_task("cairn.start_run", kwargs={{"tenant": "default", "spec": spec,
                      "inputs": {{"x": float("nan")}}}}, queue="cairn")
        app.send_task("cairn.start_run", kwargs={{"tenant": "default", "wrokflow": "typo"}},
                      queue="cairn")
        """
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    deadline = time.monotonic() + 30
    while not client.list_runs():
        assert time.monotonic() < deadline, "no run was started"
        time.sleep(0.1)
    (summary,) = client.list_runs()
    view = client.wait(summary.id, timeout=30)
    assert view.status == "succeeded"
    assert view.outputs == {"a": {"x": 2}}
    time.sleep(1)  # the duplicate and the bad messages have been handled by now
    assert count(client.runtime.engine, WorkflowRun) == 1
    assert all_counts(client.runtime.engine)["workflow_runs"] == 1
    log = "".join(p.log.read_text() for p in stack.procs)
    assert "start_run refused: inputs.x" in log
    assert "start_run refused: wrokflow" in log
