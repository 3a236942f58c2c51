"""Prepared statements: the PREPARE text made from a statement with named binds."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, bindparam, text

from db.prepared import Prepared


def test_named_binds_become_positional_in_first_use_order_and_casts_stay() -> None:
    sql = "SELECT :b::text, :a, :b FROM t WHERE x = :a"
    statement = text(sql).bindparams(bindparam("a", type_=Integer()))
    p = Prepared(sql, {"a": "integer", "b": "varchar"}, statement)
    assert p.prepare_sql == (
        f"PREPARE {p.name} (varchar, integer) AS SELECT $1::text, $2, $1 FROM t WHERE x = $2"
    )
    assert str(p.execute_statement) == f"EXECUTE {p.name}(:b, :a)"
    assert p.execute_statement._bindparams["a"].type._type_affinity is Integer


def test_the_name_follows_the_sql_so_two_versions_never_share_one() -> None:
    one = Prepared("SELECT :a", {"a": "integer"}, text("SELECT :a"))
    two = Prepared("SELECT :a + 1", {"a": "integer"}, text("SELECT :a + 1"))
    assert one.name != two.name
    assert one.name == Prepared("SELECT :a", {"a": "integer"}, text("SELECT :a")).name


def test_a_bind_without_a_type_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"no PostgreSQL type for the binds \['b'\]"):
        Prepared("SELECT :a, :b", {"a": "integer"}, text("SELECT :a, :b"))
