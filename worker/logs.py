"""Logs are events: one human line, then a stable ``action`` and the ids involved."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
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


def configure_logging(level: str = "INFO") -> None:
    """Send cairn's loggers to stderr with the event format."""
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
