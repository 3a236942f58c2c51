"""The shape of API keys: what parses, what is stored."""

from __future__ import annotations

import hashlib

import pytest

from worker.apikeys import hash_secret, parse_token

GOOD = "cairn_abcdefgh_" + "A" * 43


def test_a_well_formed_key_gives_its_prefix() -> None:
    assert parse_token(GOOD) == "abcdefgh"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "cairn_abcdefgh",
        "cairn_abcdefgh_",
        "cairn_ABCDEFGH_" + "A" * 43,  # the prefix is lower-case base32
        "cairn_abcdefg_" + "A" * 43,
        "cairn_abcdefgh_" + "A" * 42,
        "cairn_abcdefgh_" + "A" * 44,
        "cairn_abcdefgh_" + "A" * 42 + "!",
        "xairn_abcdefgh_" + "A" * 43,
        GOOD + "\n",
        " " + GOOD,
    ],
)
def test_anything_else_is_not_a_key(token: str) -> None:
    assert parse_token(token) is None


def test_the_stored_form_is_the_sha256_of_the_whole_key() -> None:
    assert hash_secret(GOOD) == hashlib.sha256(GOOD.encode()).hexdigest()
    assert GOOD not in hash_secret(GOOD)
