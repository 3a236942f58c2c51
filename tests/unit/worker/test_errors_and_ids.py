"""The error tree survives JSON; ids are UUIDv7 and sort by creation time."""

from __future__ import annotations

import json
import uuid

import pytest

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
