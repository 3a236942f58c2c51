"""The notify hook hears of approvals requested and decided, and of budgets reached; a
webhook that fails is called again."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.integration.waits.test_approvals import APPROVE, pending, wait_for
from tests.support import servers
from tests.support.stack import Stack
from worker.client import Client
from worker.errors import ConfigurationError
from worker.settings import Settings, get_settings


class Receiver:
    """A webhook that records what it is sent; it fails its first ``fail_first`` calls."""

    def __init__(self, fail_first: int = 1) -> None:
        self.events: list[dict[str, Any]] = []
        self.calls = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    self.send_response(503)
                else:
                    receiver.events.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def stack_settings(settings: Settings, receiver: Receiver) -> Settings:
    servers.redis_client().flushdb()
    return settings.model_copy(
        update={"broker_url": servers.REDIS_URL, "notify_hook": SecretStr(receiver.url)}
    )


def test_hook_hears_of_requests_decisions_and_budgets(
    stack: Stack, client: Client, receiver: Receiver, trace_dir: Path, tmp_path: Path
) -> None:
    stack.start_worker(concurrency=1)
    stack.start_beat()
    client.register_definition(APPROVE)
    run_id = client.start_run("gated", inputs={"trace_dir": str(trace_dir)})
    request = wait_for(lambda: pending(client, run_id), what="the approval request")
    wait_for(lambda: "approval.requested" in receiver.names(), what="the requested notice")
    assert receiver.calls >= 2  # the first call failed and was made again
    client.approve(request.id, by="alice")
    wait_for(lambda: "approval.decided" in receiver.names(), what="the decided notice")
    decided = next(e for e in receiver.events if e["event"] == "approval.decided")
    assert decided["data"]["approval_id"] == str(request.id)
    assert decided["data"]["by"] == "alice"
    assert decided["data"]["run_id"] == str(run_id)

    spend = {"name": "spender", "steps": [{"key": "spend", "task": "t.spend"}]}
    paid = client.start_run(spec=spend, inputs={"rounds": 2}, budget_usd="0.5")
    wait_for(lambda: "budget.reached" in receiver.names(), what="the budget notice")
    reached = next(e for e in receiver.events if e["event"] == "budget.reached")
    assert reached["data"]["run_id"] == str(paid)
    assert reached["data"]["reason"] == "run_budget"
    # Each notice once, though the hook failed once and beat ticked many times.
    assert receiver.names().count("approval.decided") == 1
    assert receiver.names().count("budget.reached") == 1
    logs = [p.read_text() for p in (tmp_path / "logs").iterdir()]
    assert logs
    assert not any("s3cret" in text for text in logs)


def test_a_bad_hook_setting_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError, match="CAIRN_NOTIFY_HOOK must be an http") as caught:
        get_settings(_env_file=None, notify_hook="ftp://user:pw@host/x")
    assert "pw@host" not in str(caught.value)
