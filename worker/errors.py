"""The one error tree of cairn.

Every error cairn raises on purpose is a ``CairnError``. A subclass's docstring is its
default message; messages carry the ids involved and, where there is one, the fix. Errors
survive a JSON round trip (``to_dict``/``from_dict``) because Celery carries them between
processes and the database stores them.

This module imports nothing from cairn: ``db`` may import it.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Any, ClassVar


class CairnError(Exception):
    """Something went wrong in cairn."""

    #: A stable code for callers in other languages and the HTTP API; never reused.
    code: ClassVar[str] = "cairn_error"
    #: Whether a step attempt that raised this may succeed if run again.
    retryable: ClassVar[bool] = True
    #: Registry of subclasses by name and by code, so a JSON error is rebuilt as its type.
    _types: ClassVar[dict[str, type[CairnError]]] = {}
    _codes: ClassVar[dict[str, type[CairnError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            raise TypeError(f"{cls.__name__} must declare its own stable `code`")
        taken = CairnError._codes.get(cls.code)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise TypeError(f"error code {cls.code!r} of {cls.__name__} is {taken.__name__}'s")
        CairnError._types[cls.__name__] = cls
        CairnError._codes[cls.code] = cls

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip()
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        """The JSON form of this error: its type name, stable code and message."""
        return {"type": self.__class__.__name__, "code": self.code, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CairnError:
        """Rebuild an error from ``to_dict`` output; unknown types become ``CairnError``."""
        err_type = cls._codes.get(str(data.get("code"))) or cls._types.get(
            str(data.get("type")), CairnError
        )
        err = err_type.__new__(err_type)
        CairnError.__init__(err, str(data.get("message", "")))
        return err

    @classmethod
    def codes(cls) -> dict[str, type[CairnError]]:
        """Every error type by its stable code."""
        return {"cairn_error": CairnError} | dict(CairnError._codes)


# --- configuration and servers ------------------------------------------------------


class ConfigurationError(CairnError):
    """A setting is missing or invalid; fix the named CAIRN_ variable or .env entry."""

    code = "configuration"
    retryable = False


class ServerUnavailable(CairnError):
    """A server cairn depends on cannot be reached; the run waits for it.

    Raised for cairn's own servers (database, artifact store, broker), never for an error
    of a step's code: an attempt that meets one is released without spending an attempt
    of the step's retry policy, and the step is queued again once the server is back.
    """

    code = "server_unavailable"
    #: Which server, in words a person reads in logs and events.
    server: ClassVar[str] = "a server"


class DatabaseUnavailable(ServerUnavailable):
    """The database cannot be reached; check CAIRN_DATABASE_URL and that the server runs."""

    code = "database_unavailable"
    server = "the database"


class AmbiguousCommit(DatabaseUnavailable):
    """The connection was lost during COMMIT: the transaction may or may not have landed."""

    code = "ambiguous_commit"


class ArtifactStoreUnavailable(ServerUnavailable):
    """The artifact store cannot be reached; check its endpoint, bucket and credentials."""

    code = "artifact_store_unavailable"
    server = "the artifact store"


class BrokerUnavailable(ServerUnavailable):
    """The Celery broker cannot be reached; check CAIRN_BROKER_URL and that Redis runs."""

    code = "broker_unavailable"
    server = "the broker"


# --- requests ---------------------------------------------------------------------------


class NotFound(CairnError):
    """The object does not exist, or it belongs to another tenant."""

    code = "not_found"
    retryable = False


class Unauthorized(CairnError):
    """The request carries no valid API key; make one with `cairn api-keys create`."""

    code = "unauthorized"
    retryable = False


class DefinitionError(CairnError):
    """A workflow definition or its inputs are invalid."""

    code = "invalid"
    retryable = False

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class UnregisteredStep(DefinitionError):
    """A definition names a step function that no running worker (or this process) has."""

    code = "unregistered_step"


class IllegalTransition(CairnError):
    """A status change that the state machine does not allow."""

    code = "illegal_transition"
    retryable = False

    def __init__(self, entity: str, current: str, target: str) -> None:
        self.entity, self.current, self.target = entity, current, target
        super().__init__(f"{entity} cannot go from {current!r} to {target!r}")


class RunNotFinished(CairnError):
    """The run did not finish within the time waited."""

    code = "run_not_finished"


class RunNotEnded(CairnError):
    """The run has not ended; cancel it first (cairn cancel RUN), then delete it."""

    code = "run_not_ended"
    retryable = False


# --- attempts ---------------------------------------------------------------------------


class StaleAttempt(CairnError):
    """This step attempt lost its lease or was superseded; its writes were not committed."""

    code = "stale_attempt"


class StepNotClaimable(CairnError):
    """The step is not queued for this attempt (finished, cancelled, running or superseded)."""

    code = "step_not_claimable"


class RunCancelled(CairnError):
    """The run was cancelled while this step was running."""

    code = "run_cancelled"
    retryable = False


# --- what a step's attempt may raise ---------------------------------------------------


class UnknownStep(CairnError):
    """No step function is registered under this name in this process."""

    code = "unknown_step"
    retryable = False


class PayloadTooLarge(CairnError):
    """A value is larger than the inline limit (CAIRN_INLINE_LIMIT_BYTES)."""

    code = "payload_too_large"
    retryable = False
    #: The argument that is too large, when one is named (``inputs``, a step's output).
    field: str | None = None

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StepTimeout(CairnError):
    """The step ran longer than its timeout_s."""

    code = "step_timeout"


class NonRetryableError(CairnError):
    """Raised by a step to fail at once: no retry can fix this."""

    code = "non_retryable"
    retryable = False


class InvalidArtifactName(CairnError):
    """An artifact name must be a relative path of plain segments, at most 255 characters."""

    code = "invalid_artifact_name"
    retryable = False


class ArtifactIntegrityError(CairnError):
    """A stored object does not match the sha256 recorded for it: it was changed or cut."""

    code = "artifact_integrity"
    retryable = False  # a tampered object stays tampered


class ArtifactMissing(NotFound):
    """The object is not in the artifact store (deleted by retention, or by hand)."""

    code = "artifact_missing"
    retryable = False  # a deleted object does not come back


# --- waits, approvals, signals, budgets ------------------------------------------------


class StepSuspended(BaseException):
    """The attempt ended waiting (committed); the runner lets it go. A BaseException, so
    a step's ``except Exception`` does not swallow it."""


class NonDeterministicWait(CairnError):
    """A step's n-th wait call differs from the one it made before it waited: waits are
    replayed by their order, so a step must make the same calls in the same order."""

    code = "non_deterministic_wait"
    retryable = False


class ApprovalRejected(CairnError):
    """A person rejected the approval the step waited for."""

    code = "approval_rejected"
    retryable = False


class ApprovalExpired(CairnError):
    """Nobody decided the approval in time and its on_timeout policy is ``fail``."""

    code = "approval_expired"
    retryable = False


class SignalTimeout(CairnError):
    """No signal of that name came before the wait's timeout."""

    code = "signal_timeout"
    retryable = False


class AlreadyDecided(CairnError):
    """The approval request was decided already (or expired, or its run ended)."""

    code = "already_decided"
    retryable = False


class HookFailed(CairnError):
    """The notify webhook did not answer 2xx; the call is retried."""

    code = "hook_failed"


class RunEnded(CairnError):
    """The run has ended: it takes no signal and no decision any more."""

    code = "run_ended"
    retryable = False


class ChildRunFailed(CairnError):
    """A child run the step waited for failed or was cancelled. Retryable: the step's
    retry policy decides, and its next attempt re-opens that child from its failed steps
    (what succeeded in it is not run again)."""

    code = "child_run_failed"

    def __init__(self, message: str | None = None, child_run_id: str = "") -> None:
        super().__init__(message)
        self.child_run_id = child_run_id


def is_retryable(exc: BaseException) -> bool:
    """Whether an attempt that raised ``exc`` may succeed if run again: a cairn error says
    so itself; any other error (the step's own) is retryable unless its policy says not."""
    return exc.retryable if isinstance(exc, CairnError) else True


#: Longest message and traceback kept in an error record.
MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 4000


def error_types(exc: BaseException) -> tuple[str, ...]:
    """The names of the error's class and its bases, most specific first."""
    return tuple(cls.__name__ for cls in type(exc).__mro__ if cls not in (object, BaseException))


def error_record(exc: BaseException, secrets: Iterable[str] = ()) -> dict[str, str]:
    """An error as JSON (type, message, short traceback), with every secret masked.

    The record is always storable: NUL characters and lone surrogates (which databases
    refuse) are escaped, and long texts are cut; a ``sanitised`` entry says what was done,
    so the real cause is recorded even when a step raised something unrecordable.
    """
    message = _text_of(exc)
    trace = "".join(traceback.format_exception(exc, limit=-8))
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        # Masked before anything is cut, so no part of a secret survives at a cut.
        message = message.replace(secret, "***")
        trace = trace.replace(secret, "***")
    notes: list[str] = []
    message = _storable(message, "message", notes)
    trace = _storable(trace, "traceback", notes)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        notes.append(f"message cut to {MAX_MESSAGE_CHARS} characters")
    trace = trace[-MAX_TRACEBACK_CHARS:]
    record = {"type": _storable(type(exc).__name__, "type", notes), "message": message}
    record["traceback"] = trace
    if notes:
        record["sanitised"] = "; ".join(notes)
    return record


def _text_of(exc: BaseException) -> str:
    """``str(exc)``, even for an exception whose ``__str__`` itself fails."""
    try:
        return str(exc)
    except Exception:  # a step's exception may be broken in any way
        return f"<{type(exc).__name__} whose message cannot be read>"


def _storable(text: str, what: str, notes: list[str]) -> str:
    """``text`` without NUL characters or lone surrogates, noting what was replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
        notes.append(f"NUL characters in the {what} written as \\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        notes.append(f"lone surrogates in the {what} written as \\udcXX")
    return text


class InvalidId(DefinitionError, ValueError):
    """An id given by a caller is not a UUID."""

    code = "invalid_id"

    def __init__(self, what: str, value: object) -> None:
        shown = ascii(value)  # escaped: a NUL or a surrogate cannot reach a terminal
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        super().__init__(what, f"{shown} is not a UUID")
        # The same words as ever: "run_id 'x' is not a UUID".
        self.message = f"{what} {shown} is not a UUID"
        self.args = (self.message,)
