"""Logs are events: one human line, then a stable ``action`` and the ids involved."""

from __future__ import annotations

import contextvars
import json
import logging
import traceback
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

#: Record attributes printed after the message, in this order, when present.
FIELDS = ("action", "run_id", "step_id", "key", "attempt", "owner", "workflow")


#: The ids of the attempt this thread runs now: added to every line logged meanwhile,
#: whoever logs it (cairn, Celery, the step's own loggers).
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "cairn_attempt", default=None
)


@contextmanager
def attempt_context(**ids: Any) -> Iterator[None]:
    """Tag every line logged inside with ``ids`` (run_id, step_id, key, attempt)."""
    token = _current.set(ids)
    try:
        yield
    finally:
        _current.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found = dict(_current.get() or {})
    found.update({name: getattr(record, name) for name in FIELDS if hasattr(record, name)})
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids (run_id, step_id,
    key, attempt, ...) of the attempt it was logged in, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = record.exc_text or self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class EventFormatter(logging.Formatter):
    """``time level logger: message action=... run_id=... step_id=... attempt=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{name}={value}" for name, value in _fields(record).items()]
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(extras)}{sep}{tail}"


MASK = "***"
_masked: list[str] = []
_base_factory = logging.getLogRecordFactory()


def mask_secrets(secrets: Iterable[str]) -> None:
    """Mask every value of ``secrets`` in every log record of this process from now on.

    Done where records are made, so it holds for every logger and handler (Celery's
    included, set up before or after this) and for the text of a logged exception: a
    step's exception may quote a URL with a password in it.
    """
    found = {str(s) for s in secrets if s} | set(_masked)
    _masked[:] = sorted(found, key=len, reverse=True)  # longest first: no partial leftovers
    logging.setLogRecordFactory(_masking_factory)


def masked(text: str) -> str:
    """``text`` with every secret given to :func:`mask_secrets` replaced by ``***``."""
    for secret in _masked:
        text = text.replace(secret, MASK)
    return text


def _masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    if not _masked:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the logging module reports it itself
        return record
    record.msg, record.args = masked(message), None
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = masked("".join(traceback.format_exception(*record.exc_info)).rstrip())
    elif record.exc_text:
        record.exc_text = masked(record.exc_text)
    if record.stack_info:
        record.stack_info = masked(record.stack_info)
    return record


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), fmt: str = "text") -> None:
    """Send cairn's loggers to stderr in ``fmt`` (``text``: the event format; ``json``:
    one object a line); mask ``secrets`` everywhere. In JSON, the root logger (the
    step modules' own loggers) gets the same handler when nothing else handles it."""
    mask_secrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else EventFormatter())
    logger = logging.getLogger("cairn")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    root = logging.getLogger()
    if fmt == "json" and not root.handlers:
        root.addHandler(handler)
        root.setLevel(level)


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds fixed ids (run, step, attempt) to every line."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
