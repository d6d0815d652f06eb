"""Models and migrations agree: a freshly upgraded ledger has exactly the models' tables,
columns, types, nullability, indexes and foreign keys (Alembic's autogenerate comparison, what
`alembic check` runs); and upgrading an old ledger keeps its data."""

import os
import sqlite3
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from runner.ledger import models  # noqa: F401 - the tables, on SQLModel.metadata
from runner.ledger.db import current_revision, make_engine, upgrade
from tests.conftest import ROOT
from tests.helpers import HEAD_REVISION as HEAD
from tests.runner.conftest import new_postgres_ledger


def schema_diff(db) -> list:
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, SQLModel.metadata)
    finally:
        engine.dispose()


def test_models_and_migrations_agree(tmp_path):
    db = tmp_path / "fresh.db"
    upgrade(db)
    assert schema_diff(db) == []


def test_the_check_sees_a_difference(tmp_path):
    """The comparison is not vacuous: a schema one migration behind differs from the models."""
    db = tmp_path / "behind.db"
    upgrade(db, "0003")
    diff = schema_diff(db)
    assert any("stop_reason" in str(d) for d in diff), diff


def test_upgrading_an_old_ledger_keeps_its_data(tmp_path):
    db = tmp_path / "old.db"
    upgrade(db, "0001")
    c = sqlite3.connect(db)
    c.execute(
        "INSERT INTO runs (id, name, spec_json, spec_hash, status, created_at, updated_at) "
        "VALUES (1, 'old', '{}', 'abc', 'succeeded', 1.0, 2.0)"
    )
    c.execute("INSERT INTO metric_points VALUES (1, 'train/loss', 5, 100, 3.25)")
    c.execute("INSERT INTO events (run_id, time, kind, reason) VALUES (1, 1.0, 'state', 'x')")
    c.commit()
    c.close()
    upgrade(db, "0003")
    c = sqlite3.connect(db)
    c.execute(
        "INSERT INTO results (run_id, metrics_json, created_at) "
        'VALUES (1, \'{"provenance": {"sample": true}}\', 3.0)'
    )
    c.commit()
    c.close()
    upgrade(db)
    assert current_revision(db) == HEAD
    c = sqlite3.connect(db)
    # 0007 summarized the stored points into their bucket (steps 0-63)
    assert c.execute(
        "SELECT level, bucket, n, first_step, last_step, min_value, max_value "
        "FROM metric_buckets ORDER BY level"
    ).fetchall() == [(64, 0, 1, 5, 5, 3.25, 3.25), (1024, 0, 1, 5, 5, 3.25, 3.25)]
    assert c.execute(
        "SELECT name, status, gpu_hours, cost_usd, stop_reason FROM runs"
    ).fetchall() == [("old", "succeeded", 0.0, 0.0, None)]
    assert c.execute("SELECT value FROM metric_points").fetchall() == [(3.25,)]
    assert c.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    assert c.execute("SELECT sample FROM results").fetchall() == [(1,)]  # filled from the JSON
    (ledger_id,) = c.execute("SELECT value FROM ledger_info WHERE key = 'ledger_id'").fetchone()
    assert len(ledger_id) == 32 and c.execute("SELECT COUNT(*) FROM attempts").fetchone() == (0,)


# ---------------------------------------------------------------- PostgreSQL


def test_postgresql_upgrade_check_and_one_step_down_and_back(postgres):
    """An empty PostgreSQL database: upgraded to head it matches the models (the same check as
    SQLite's), one step down it does not, and back up it does again."""
    from runner.ledger.db import alembic_config

    url = new_postgres_ledger(postgres, "migrate", migrated=False)
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == HEAD and schema_diff(url) == []
    from alembic import command

    command.downgrade(alembic_config(url), "0006")  # before 0007's buckets
    assert current_revision(url) == "0006"
    assert any("metric_buckets" in str(d) for d in schema_diff(url))  # 0007 added the table
    # points stored before 0007 are summarized by it: a spiky series, two buckets
    import sqlalchemy as sa

    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, name, spec_json, spec_hash, status, created_at, "
                "updated_at, max_tokens, tokens_seen, attempt, priority, is_baseline, "
                "gpu_hours, cost_usd) VALUES (1, 'r', '{}', 'h', 'running', 1, 1, 10, 0, 0, 0, "
                "false, 0, 0)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO metric_points VALUES (1, 'train/loss', :s, :t, :v)"),
            [{"s": s, "t": 10 * s, "v": 9.0 if s == 70 else 1.0 + s / 100} for s in range(100)],
        )
    upgrade(url)
    assert current_revision(url) == HEAD and schema_diff(url) == []
    with eng.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT level, bucket, n, first_step, last_step, min_step, max_step, max_value "
                "FROM metric_buckets ORDER BY level, bucket"
            )
        ).all()
    eng.dispose()
    assert [tuple(r) for r in rows] == [
        (64, 0, 64, 0, 63, 0, 63, 1.63),
        (64, 1, 36, 64, 99, 64, 70, 9.0),
        (1024, 0, 100, 0, 99, 0, 70, 9.0),
    ]


def test_replicas_migrating_at_once_take_turns(postgres):
    """Four processes upgrade one empty PostgreSQL database together (replicas starting at
    once): the advisory lock makes them take turns, and every one ends at head."""
    url = new_postgres_ledger(postgres, "race", migrated=False)
    code = "import sys; from runner.ledger.db import upgrade; upgrade(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], env=env, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert current_revision(url) == HEAD and schema_diff(url) == []


def test_pax_db_upgrade_takes_a_database_url(postgres):
    import json

    url = new_postgres_ledger(postgres, "cli", migrated=False)
    res = subprocess.run(
        [sys.executable, "-m", "pax.cli", "db", "upgrade", "--database-url", url],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["revision"] == HEAD
    assert current_revision(url) == HEAD
