"""Checks that the throwaway PostgreSQL harness gives a server SQLAlchemy can use."""

from __future__ import annotations

import sqlalchemy as sa


def test_postgres_url_reaches_a_writable_server(postgres_url: str) -> None:
    # A round trip through a table proves more than `select 1`: the role may create and write.
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("select 1")).scalar_one() == 1
            conn.execute(sa.text("create temporary table harness_probe (v text)"))
            conn.execute(sa.text("insert into harness_probe values ('ok')"))
            assert conn.execute(sa.text("select v from harness_probe")).scalar_one() == "ok"
            assert conn.execute(sa.text("show server_encoding")).scalar_one() == "UTF8"
    finally:
        engine.dispose()
