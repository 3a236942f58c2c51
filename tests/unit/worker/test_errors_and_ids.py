"""The error tree survives JSON; ids are UUIDv7 and sort by creation time."""

from __future__ import annotations

import ast
import json
import uuid
from pathlib import Path

import pytest

from worker import errors
from worker.errors import CairnError, DefinitionError, NotFound, StaleAttempt
from worker.ids import new_id, parse_id


def test_default_message_is_the_docstring() -> None:
    assert str(StaleAttempt()).startswith("This step attempt lost its lease")


@pytest.mark.parametrize(
    "error", [NotFound("run 1 not found"), DefinitionError("steps[0].key", "x")]
)
def test_errors_round_trip_through_json(error: CairnError) -> None:
    back = CairnError.from_dict(json.loads(json.dumps(error.to_dict())))
    assert type(back) is type(error)
    assert str(back) == str(error)


def test_unknown_error_type_becomes_the_root() -> None:
    back = CairnError.from_dict({"type": "SomethingElse", "message": "m"})
    assert type(back) is CairnError
    assert str(back) == "m"


def test_ids_are_version_7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(isinstance(i, uuid.UUID) and i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_parse_id_names_what_is_wrong() -> None:
    value = new_id()
    assert parse_id(str(value)) == value
    with pytest.raises(ValueError, match="run_id 'nope' is not a UUID"):
        parse_id("nope", "run_id")


def test_every_error_has_its_own_stable_code_and_survives_json() -> None:
    codes = errors.CairnError.codes()
    assert len(codes) == len(set(codes.values()))
    for code, cls in codes.items():
        assert cls.code == code
        rebuilt = errors.CairnError.from_dict({"type": cls.__name__, "code": code, "message": "m"})
        assert type(rebuilt) is cls
        assert rebuilt.message == "m"


def test_an_error_without_its_own_code_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="stable `code`"):
        type("Unnamed", (errors.NotFound,), {})


@pytest.mark.parametrize(
    "cls",
    [
        errors.DefinitionError,
        errors.UnknownStep,
        errors.PayloadTooLarge,
        errors.NonRetryableError,
        errors.InvalidArtifactName,
        errors.ArtifactIntegrityError,
        errors.ArtifactMissing,
    ],
)
def test_errors_no_retry_can_fix_say_so(cls: type[errors.CairnError]) -> None:
    assert cls.retryable is False
    assert errors.is_retryable(cls.__new__(cls)) is False


def test_a_steps_own_error_is_retryable_unless_its_policy_says_not() -> None:
    assert errors.is_retryable(ValueError("x"))
    assert errors.is_retryable(errors.StepTimeout())


def test_every_cairn_error_lives_in_worker_errors() -> None:
    root = Path(__file__).resolve().parents[3]
    names = {c.__name__ for c in errors.CairnError.codes().values()}
    for package in ("worker", "tasks", "db", "cairn"):
        for path in (root / package).rglob("*.py"):
            if path == root / "worker" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                    assert not bases & names, f"{path}: {node.name} belongs in worker/errors.py"
