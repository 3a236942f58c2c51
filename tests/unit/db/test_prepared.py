"""Prepared statements: the PREPARE text made from a statement with named, typed binds."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer, String, bindparam, text

from db.prepared import Prepared


def _typed(sql: str, **types: object) -> object:
    return text(sql).bindparams(*(bindparam(n, type_=t) for n, t in types.items()))


def test_named_binds_become_positional_in_first_use_order_and_casts_stay() -> None:
    sql = "SELECT :b::text, :a, :b FROM t WHERE x = :a"
    p = Prepared(_typed(sql, a=Integer(), b=String()))
    assert p.declare_sql == (
        f"PREPARE {p.name} (VARCHAR, INTEGER) AS SELECT $1::text, $2, $1 FROM t WHERE x = $2"
    )
    assert f"; {p.declare_sql}; EXPLAIN EXECUTE {p.name}(NULL, NULL); " in p.prepare_sql
    assert str(p.execute_statement) == f"EXECUTE {p.name}(:b, :a)"
    assert p.execute_statement._bindparams["a"].type._type_affinity is Integer


def test_the_name_follows_the_sql_so_two_versions_never_share_one() -> None:
    one = Prepared(_typed("SELECT :a", a=Integer()))
    two = Prepared(_typed("SELECT :a + 1", a=Integer()))
    assert one.name != two.name
    assert one.name == Prepared(_typed("SELECT :a", a=Integer())).name


def test_a_bind_without_a_type_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"no type for the binds \['b'\]"):
        Prepared(_typed("SELECT :a, :b", a=Integer()))
