"""OpenTelemetry: a run started inside a service's span is one trace: the service's span,
cairn.start_run, and a span per step attempt exported by a real worker (OTLP over HTTP to
a receiver in this process), each attempt's span the child of the span that sent its
message, with the run, step, attempt, workflow and tenant as attributes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.stack import Stack
from worker.client import Client

SPEC = {
    "name": "traced",
    "steps": [
        {"key": "a", "task": "t.increment"},
        {"key": "b", "task": "t.increment", "after": ["a"]},
    ],
}


class Receiver:
    """An OTLP/HTTP trace receiver: the spans workers export, decoded."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """This process' spans (the service's side), kept in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


@pytest.mark.parametrize("backend", ["postgresql"])  # tracing does not touch the database
def test_a_run_is_one_trace_across_processes(
    stack: Stack, client: Client, receiver: Receiver, exporter: InMemorySpanExporter
) -> None:
    stack.start_worker(
        concurrency=1,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "cairn-test-worker",
            # b goes by the broker, so its parent is a's span (not the run's context)
            "CAIRN_INLINE_CONTINUATION": "false",
        },
    )
    exporter.clear()
    with trace.get_tracer("service").start_as_current_span("service request") as outer:
        run_id = client.start_run(spec=SPEC, inputs={"x": 1})
    assert client.wait(run_id, timeout=30).status == "succeeded"
    deadline = time.monotonic() + 15
    while len({s.name for s in receiver.spans}) < 2:
        assert time.monotonic() < deadline, [s.name for s in receiver.spans]
        time.sleep(0.1)
    trace_id = outer.get_span_context().trace_id
    local = {s.name: s for s in exporter.get_finished_spans()}
    start = local["cairn.start_run"]
    assert start.parent is not None
    assert start.parent.span_id == outer.get_span_context().span_id
    steps = {s.name: s for s in receiver.spans}
    a, b = steps["cairn.step a"], steps["cairn.step b"]
    for span in (a, b):
        assert int.from_bytes(span.trace_id, "big") == trace_id
    assert int.from_bytes(a.parent_span_id, "big") == start.context.span_id
    assert b.parent_span_id == a.span_id
    attributes = {kv.key: kv.value for kv in a.attributes}
    assert attributes["cairn.run_id"].string_value == str(run_id)
    assert attributes["cairn.step"].string_value == "a"
    assert attributes["cairn.attempt"].int_value == 1
    assert attributes["cairn.workflow"].string_value == "traced"
    assert attributes["cairn.tenant_id"].string_value


@pytest.mark.parametrize("backend", ["postgresql"])  # tracing does not touch the database
def test_tracing_is_off_without_otel_variables(
    stack: Stack, client: Client, receiver: Receiver
) -> None:
    stack.start_worker(concurrency=1)
    assert client.wait(client.start_run(spec=SPEC, inputs={"x": 1}), timeout=30).finished
    time.sleep(0.5)
    assert receiver.spans == []
