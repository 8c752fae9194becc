"""The run database's tables and their version.

``PRAGMA user_version`` holds the ``SCHEMA_VERSION`` that created a run's database. A run folder
outlives the selfprog that wrote it (it is resumed, reported on, collected), so a database of
another layout is refused on open with both versions named, never misread column by column;
the one step this selfprog knows how to take (2 to 3) is migrated in place, in one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrator.errors import StoreError

DB = "run.db"
SCHEMA_VERSION = 3
"""The layout of the tables below. Change it with them (and add the step to ``_MIGRATIONS``)."""
_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created REAL, program TEXT, config TEXT, state TEXT,
    noise REAL, finished REAL, program_hash TEXT);
CREATE TABLE IF NOT EXISTS run_notes (
    id INTEGER PRIMARY KEY, created REAL, kind TEXT, text TEXT);
CREATE TABLE IF NOT EXISTS variants (
    id TEXT PRIMARY KEY, idx INTEGER UNIQUE, hash TEXT UNIQUE, parent_id TEXT, call_id INTEGER,
    created REAL, folder TEXT, diff TEXT, seed_diff TEXT, collected INTEGER DEFAULT 0,
    verdict TEXT, value REAL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY, variant_id TEXT, seed INTEGER, purpose TEXT, state TEXT,
    attempts INTEGER DEFAULT 0, status TEXT, metric REAL, result TEXT, duration_s REAL,
    finished REAL, UNIQUE (variant_id, seed));
CREATE TABLE IF NOT EXISTS generation_calls (
    id INTEGER PRIMARY KEY, created REAL, backend TEXT, model TEXT, parent_id TEXT,
    outcome TEXT, variant_id TEXT, rejection TEXT, error TEXT, latency_s REAL,
    tokens_in INTEGER, tokens_out INTEGER, tokens_reasoning INTEGER, finish_reason TEXT,
    kind TEXT, generator TEXT, prompt TEXT, response TEXT);
"""

_MIGRATIONS = {
    2: "ALTER TABLE runs ADD COLUMN program_hash TEXT; "
       "CREATE TABLE IF NOT EXISTS run_notes (id INTEGER PRIMARY KEY, created REAL, kind TEXT, "
       "text TEXT);",
}
"""From version N to N + 1: what 3 added (the program's hash, and the run's notes)."""


def connect(path: Path) -> sqlite3.Connection:
    """Open a run database (WAL, rows by column name), creating its tables when it has none.

    Raises:
        StoreError: the database was written with another ``SCHEMA_VERSION`` (it is left as it
            was: not even its journal mode is changed).
    """
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    (version,) = db.execute("PRAGMA user_version").fetchone()
    (tables,) = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    if version in _MIGRATIONS and tables != 0:
        try:
            version = _migrate(db, version)
        except sqlite3.OperationalError as exc:  # e.g. a read-only copy of an older run
            db.close()
            raise StoreError(f"{path.parent} was written by an older selfprog (schema "
                             f"{version}) and cannot be brought to schema {SCHEMA_VERSION} "
                             f"here: {exc}") from None
    if version != SCHEMA_VERSION and (version != 0 or tables != 0):
        db.close()
        age = "an older" if version < SCHEMA_VERSION else "a newer"
        raise StoreError(f"{path.parent} was written by {age} selfprog (schema {version}, this "
                         f"one reads {SCHEMA_VERSION}): open it with the selfprog that wrote it")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if version == 0:  # a new run (IF NOT EXISTS: a reader may race its creator)
        db.executescript(f"BEGIN IMMEDIATE; {_TABLES} PRAGMA user_version = {SCHEMA_VERSION}; "
                         "COMMIT;")
    return db


def _migrate(db: sqlite3.Connection, version: int) -> int:
    """Take a database up to ``SCHEMA_VERSION`` step by step, each in one transaction."""
    while version in _MIGRATIONS:
        db.executescript(f"BEGIN IMMEDIATE; {_MIGRATIONS[version]} "
                         f"PRAGMA user_version = {version + 1}; COMMIT;")
        version += 1
    return version
