"""Canonical JSON, and the checks every value passes before cairn stores or sends it.

cairn speaks JSON only (no pickle). A value is accepted when it is plain JSON: dicts with
string keys, lists, strings without NUL characters or lone surrogates, finite numbers,
booleans and null; nested no deeper than a limit and no larger than the inline limit.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from worker.errors import DefinitionError, PayloadTooLarge


def dumps(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 text, NaN and Infinity refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def loads_unique(text: str | bytes, field: str) -> Any:
    """``json.loads``, refusing an object that names a key twice with a
    :class:`DefinitionError` naming ``field`` (json keeps the last one without a word).
    Malformed JSON raises ``json.JSONDecodeError`` as ``json.loads`` does."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise DefinitionError(field, f"the key {key!r} appears twice in one object")
            found[key] = value
        return found

    return json.loads(text, object_pairs_hook=unique)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def checksum(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``: equal values, equal checksums."""
    return sha256_hex(dumps(value).encode())


def check_json(value: Any, field: str, *, max_depth: int) -> None:
    """Raise :class:`DefinitionError` naming the path of the first non-JSON part of ``value``."""
    stack: list[tuple[Any, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            raise DefinitionError(path, f"nested deeper than {max_depth} levels")
        if item is None or isinstance(item, bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise DefinitionError(path, f"{item} is not a JSON number")
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise DefinitionError(path, f"key {key!r} is not a string")
                _check_text(key, f"{path}{key_segment(key)}")
                stack.append((sub, f"{path}{key_segment(key)}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        else:
            raise DefinitionError(path, f"a {type(item).__name__} is not JSON")


def key_segment(key: str) -> str:
    """``.key`` in a field path; an odd key (NUL, surrogate, long) quoted and escaped."""
    if key.isprintable() and text_problem(key) is None and 0 < len(key) <= 60:
        return f".{key}"
    shown = ascii(key[:60]) + ("..." if len(key) > 60 else "")
    return f"[{shown}]"


def text_problem(text: str) -> str | None:
    """Why a database would refuse ``text`` (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def _check_text(text: str, path: str) -> None:
    problem = text_problem(text)
    if problem:
        raise DefinitionError(path, problem)


def encode_checked(value: Any, field: str, *, max_depth: int, limit_bytes: int) -> bytes:
    """Check ``value`` and return its canonical JSON bytes; refuse it over ``limit_bytes``."""
    check_json(value, field, max_depth=max_depth)
    data = dumps(value).encode()
    if len(data) > limit_bytes:
        raise PayloadTooLarge(
            f"{field}: {len(data)} bytes is over the inline limit of {limit_bytes} bytes "
            "(CAIRN_INLINE_LIMIT_BYTES); store large data as an artifact",
            field=field,
        )
    return data
