"""Artifact names and object keys: what may be a name, and the key a name becomes."""

from __future__ import annotations

import re
import uuid

import pytest

from worker.artifacts import MAX_NAME, object_key, validate_key, validate_name
from worker.errors import CairnError, InvalidArtifactName

TENANT = uuid.UUID("01a20000-0000-7000-8000-000000000001")
RUN = uuid.UUID("01a20000-0000-7000-8000-000000000002")


@pytest.mark.parametrize(
    "name",
    [
        "report.md",
        "notes/2026/report.txt",
        "héllo wörld.txt",
        "..hidden-but-fine",
        "a..b",
        "x" * MAX_NAME,
        "日本語/ファイル.csv",
    ],
)
def test_plain_relative_names_are_accepted_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("..", "'..' path segment"),
        ("../escape.txt", "'..' path segment"),
        ("a/../../b", "'..' path segment"),
        ("a/..", "'..' path segment"),
        ("./a", "'.' path segment"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("/etc/passwd", "starts with '/'"),
        ("a\\b", "backslash"),
        ("..\\..\\windows", "backslash"),
        ("nul\x00byte", "U+0000"),
        ("bell\x07.txt", "U+0007"),
        ("tab\tname", "U+0009"),
        ("line\nbreak", "U+000A"),
        ("del\x7f", "U+007F"),
        ("c1\x85control", "U+0085"),
        ("lone\ud800surrogate", "not valid Unicode"),
        ("ab/" * 85 + "c", "256 characters long, over the limit of 255"),
        ("é" * 200, "over 255 bytes"),
    ],
)
def test_unsafe_names_are_refused_naming_the_problem(name: str, problem: str) -> None:
    with pytest.raises(InvalidArtifactName, match=re.escape(problem)) as info:
        validate_name(name)
    assert isinstance(info.value, CairnError)
    assert "\x00" not in str(info.value)  # the name is quoted escaped, never raw
    assert len(str(info.value)) < 300  # a huge name is cut, not copied whole


def test_object_key_is_tenant_run_step_attempt_name() -> None:
    key = object_key(TENANT, RUN, "make", 2, "notes/report.txt")
    assert key == f"{TENANT}/{RUN}/make/2/notes/report.txt"
    assert validate_key(key) == key


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\b", "ctl\x01", ""])
def test_object_key_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(InvalidArtifactName, match="artifact name"):
        object_key(TENANT, RUN, "make", 1, name)


@pytest.mark.parametrize(
    ("tenant", "run", "step_key", "attempt", "what"),
    [
        ("a/b", RUN, "make", 1, "tenant id"),
        (TENANT, "..", "make", 1, "run id"),
        (TENANT, RUN, "a/b", 1, "step key"),
        (TENANT, RUN, "", 1, "step key"),
        (TENANT, RUN, "make", 0, "attempt"),
        (TENANT, RUN, "make", True, "attempt"),
    ],
)
def test_object_key_refuses_parts_that_would_change_its_shape(
    tenant: object, run: object, step_key: str, attempt: int, what: str
) -> None:
    with pytest.raises(InvalidArtifactName, match=what):
        object_key(tenant, run, step_key, attempt, "out.txt")


def test_a_key_is_limited_to_1024_bytes_even_when_its_name_fits() -> None:
    name = "/".join(["\U0001d11e" * 63] * 4)  # 255 characters of 4 bytes: a valid name
    assert validate_name(name) == name
    with pytest.raises(InvalidArtifactName, match="1024 bytes"):
        object_key(TENANT, RUN, "make", 1, name)
