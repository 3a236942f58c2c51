"""Logs are events: one human line, then a stable ``action`` and the ids involved."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, MutableMapping
from typing import Any

#: Record attributes printed after the message, in this order, when present.
FIELDS = ("action", "run_id", "step_id", "key", "attempt", "owner", "workflow")


class EventFormatter(logging.Formatter):
    """``time level logger: message action=... run_id=... step_id=... attempt=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{name}={getattr(record, name)}" for name in FIELDS if hasattr(record, name)]
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


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send cairn's loggers to stderr with the event format; mask ``secrets`` everywhere."""
    mask_secrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(EventFormatter())
    logger = logging.getLogger("cairn")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds fixed ids (run, step, attempt) to every line."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs
