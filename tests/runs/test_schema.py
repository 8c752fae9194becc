"""The run database's schema version: a run folder of another selfprog is refused, never misread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.runs.schema import DB, SCHEMA_VERSION
from orchestrator.runs.store import Store

SCHEMA_0 = """
CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL, program TEXT, config TEXT, state TEXT,
                   noise REAL, finished REAL);
CREATE TABLE variants (id TEXT PRIMARY KEY, idx INTEGER UNIQUE, hash TEXT UNIQUE, parent_id TEXT,
                       call_id INTEGER, created REAL, folder TEXT, diff TEXT, seed_diff TEXT,
                       collected INTEGER DEFAULT 0, verdict TEXT, value REAL);
INSERT INTO runs (id, state) VALUES ('old', 'finished');
"""
"""What a selfprog before schema versions left: the tables, and ``user_version`` never set."""


def hand_made(folder: Path, script: str, version: int | None = None) -> Path:
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / DB) as db:
        db.executescript(script)
        if version is not None:
            db.execute(f"PRAGMA user_version = {version}")
    return folder


def user_version(folder: Path) -> int:
    with sqlite3.connect(f"file:{folder / DB}?mode=ro", uri=True) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_new_run_records_the_schema_version_that_wrote_it(tmp_path):
    Store(tmp_path / "r", create=True).close()
    assert user_version(tmp_path / "r") == SCHEMA_VERSION
    Store(tmp_path / "r").init_run(tmp_path, "{}")  # and the same selfprog opens it again


def test_an_old_run_folder_is_refused_with_its_schema_version(tmp_path):
    folder = hand_made(tmp_path / "old", SCHEMA_0)
    for create in (False, True):
        with pytest.raises(StoreError) as caught:
            Store(folder, create=create)
        assert f"written by an older selfprog (schema 0, this one reads {SCHEMA_VERSION})" in \
            str(caught.value)
        assert str(folder) in str(caught.value)
    assert user_version(folder) == 0, "refusing a run folder must not rewrite it"
    with sqlite3.connect(folder / DB) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert tables == {"runs", "variants"}, "no table of this selfprog was added to it"
    assert mode == "delete", "not even its journal mode was changed"


def test_a_run_folder_from_a_newer_selfprog_is_refused_with_both_versions(tmp_path):
    folder = hand_made(tmp_path / "new", SCHEMA_0, version=SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=rf"written by a newer selfprog \(schema "
                                         rf"{SCHEMA_VERSION + 1}, this one reads {SCHEMA_VERSION}\)"):
        Store(folder)


SCHEMA_2 = """
CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL, program TEXT, config TEXT, state TEXT,
                   noise REAL, finished REAL);
CREATE TABLE variants (id TEXT PRIMARY KEY, idx INTEGER UNIQUE, hash TEXT UNIQUE, parent_id TEXT,
                       call_id INTEGER, created REAL, folder TEXT, diff TEXT, seed_diff TEXT,
                       collected INTEGER DEFAULT 0, verdict TEXT, value REAL);
CREATE TABLE evaluations (id INTEGER PRIMARY KEY, variant_id TEXT, seed INTEGER, purpose TEXT,
                          state TEXT, attempts INTEGER DEFAULT 0, status TEXT, metric REAL,
                          result TEXT, duration_s REAL, finished REAL, UNIQUE (variant_id, seed));
CREATE TABLE generation_calls (id INTEGER PRIMARY KEY, created REAL, backend TEXT, model TEXT,
    parent_id TEXT, outcome TEXT, variant_id TEXT, rejection TEXT, error TEXT, latency_s REAL,
    tokens_in INTEGER, tokens_out INTEGER, tokens_reasoning INTEGER, finish_reason TEXT,
    kind TEXT, generator TEXT, prompt TEXT, response TEXT);
INSERT INTO runs (id, program, config, state) VALUES ('two', '/gone/program', '{}', 'finished');
INSERT INTO variants (id, idx, hash, folder, verdict, value)
    VALUES ('abc', 0, 'h', 'variants/0000-abc', 'admitted', 1.5);
"""
"""A run of the selfprog before program hashes and run notes (schema 2)."""


def test_a_schema_2_run_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    folder = hand_made(tmp_path / "two", SCHEMA_2, version=2)
    store = Store(folder)
    assert user_version(folder) == SCHEMA_VERSION == 3
    info = store.run_info()
    assert info["state"] == "finished" and info["program_hash"] is None
    assert store.program_root() == Path("/gone/program"), "an old run's absolute path is kept"
    assert [v.value for v in store.variants()] == [1.5]
    store.note("program-changed", "recorded")
    assert [n["kind"] for n in store.notes()] == ["program-changed"]
