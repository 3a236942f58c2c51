"""OpenTelemetry traces (the optional ``cairn[otel]`` extra): one trace per run, a span
per step attempt.

Off by default. cairn's own processes (workers, the API) turn it on from the standard
variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` is off), with
``OTEL_SERVICE_NAME`` and the rest read by the SDK itself. A service using the
:class:`~worker.client.Client` keeps its own tracer provider: cairn only uses the
OpenTelemetry API, so a run started inside one of the service's spans belongs to the
service's trace.

How a run's spans hang together: a start stores the W3C trace context of the moment (the
caller's span, or the ``cairn.start_run`` span made for it) on the run row; every step
message carries the sender's context in its Celery headers (``traceparent``); an attempt's
span (``cairn.step <key>``) is a child of the message's context, else of the run's, with
the run, step, attempt, workflow and tenant as attributes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

from worker.errors import ConfigurationError

try:  # the API is light; the SDK and exporters come with the extra
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.propagate import extract, inject

    HAVE_API = True
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    HAVE_API = False

#: The keys of a W3C trace context in a carrier (message headers, the run row).
CONTEXT_KEYS = ("traceparent", "tracestate")


def wanted() -> bool:
    """Whether the standard variables ask this process to export traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service_name: str) -> bool:
    """Install a tracer provider exporting this process' spans when :func:`wanted`; call
    it after a fork (each prefork child exports its own). True when tracing is on."""
    if not wanted():
        return False
    # Imported here: the SDK and the exporter are the optional extra, needed only when on.
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            ConsoleSpanExporter,
        )
    except ImportError:
        raise ConfigurationError(
            "OTEL_* variables ask for traces, but OpenTelemetry is not installed: "
            "pip install 'cairn[otel]' (or unset them)"
        ) from None
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigurationError(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'cairn[otel]'"
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter_name!r}: cairn exports otlp (HTTP) or console"
        )
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Export what is buffered (a prefork child about to exit)."""
    if HAVE_API:
        provider = trace.get_tracer_provider()
        stop = getattr(provider, "shutdown", None)
        if stop is not None:
            stop()


def current_context() -> dict[str, str] | None:
    """The W3C trace context of the current span, as a carrier; None when there is none."""
    if not HAVE_API:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return {k: v for k, v in carrier.items() if k in CONTEXT_KEYS} or None


def start_span(name: str, **attributes: Any) -> Any:
    """A span around a start (the run's root when the caller has none); a no-op context
    manager without OpenTelemetry."""
    if not HAVE_API:
        return nullcontext()
    return trace.get_tracer("cairn").start_as_current_span(
        name, kind=trace.SpanKind.PRODUCER, attributes=_attrs(attributes)
    )


@contextmanager
def attempt_span(
    key: str,
    headers: Mapping[str, Any] | None,
    run_context: Mapping[str, Any] | None,
    **attributes: Any,
) -> Iterator[None]:
    """The span of one step attempt: a child of the message's trace context, else of the
    run's; current while the attempt runs (the messages it sends carry it on)."""
    if not HAVE_API:
        yield
        return
    carrier = {k: str(v) for k, v in (headers or {}).items() if k in CONTEXT_KEYS}
    parent = extract(carrier or dict(run_context or {}))
    tracer = trace.get_tracer("cairn")
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            f"cairn.step {key}", kind=trace.SpanKind.CONSUMER, attributes=_attrs(attributes)
        ):
            yield
    finally:
        otel_context.detach(token)


def _attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"cairn.{k}": v if isinstance(v, int | float | bool) else str(v)
        for k, v in values.items()
        if v is not None
    }


_set_up_in: list[int] = []


def ensure_setup(service_name: str) -> None:
    """:func:`setup` once per process (a prefork child sets up its own after the fork)."""
    if os.getpid() not in _set_up_in:
        _set_up_in.append(os.getpid())
        setup(service_name)
