"""The run store: one SQLite database (WAL) per run plus a folder per variant.

Layout of a run folder::

    runs/RUN/run.db                      runs, variants, evaluations, generation calls
    runs/RUN/variants/0003-<id>/source/  the variant's editable files
                               parent.diff, seed.diff, prompt.txt, response.txt
                               eval-<seed>/  the runner's logs, events, artifacts; result.json

Crash safety comes from the order of writes. A variant's folder is written first and its row
(with a pending evaluation) is committed after, in one transaction; a folder without a row is
debris of a kill and is removed on resume. An evaluation is ``pending`` until its result is
committed; a kill in between leaves it pending, and resume runs it again. So every variant in
the store is finished exactly once, and nothing proposed and recorded is lost.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.checkpoints import checkpoint
from orchestrator.errors import StoreError
from orchestrator.generators.base import GenerationCall
from orchestrator.result import Status, VariantResult
from orchestrator.runs.schema import DB, connect


@dataclass(frozen=True)
class VariantRow:
    id: str
    idx: int
    parent_id: str | None
    folder: Path
    diff: str
    seed_diff: str
    created: float
    collected: bool
    verdict: str | None
    """``admitted``, ``rejected`` or ``recheck`` once its evaluations are settled."""
    value: float | None
    """Mean metric over its evaluations; None when one failed or before any finished."""

    def files(self) -> dict[str, str]:
        """The editable files, read back from the folder."""
        src = self.folder / "source"
        return {p.relative_to(src).as_posix(): p.read_text()
                for p in sorted(src.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class EvalRow:
    id: int
    variant_id: str
    seed: int
    purpose: str
    """``first``, ``noise`` (a seed measurement of the noise floor) or ``recheck``."""
    state: str
    """``pending`` or ``done``."""
    attempts: int
    status: Status | None
    metric: float | None
    duration_s: float | None
    finished: float | None
    error: str | None


class Store:
    """One run's records. Written by one thread of one process; read by anyone.

    Raises (on open):
        StoreError: the folder holds no run, or one written with another ``SCHEMA_VERSION``.
    """

    def __init__(self, folder: Path, *, create: bool = False):
        self.folder = Path(folder)
        path = self.folder / DB
        if not create and not path.is_file():
            raise StoreError(f"{self.folder} is not a run: it has no {DB}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = connect(path)

    @property
    def run_id(self) -> str:
        return self.folder.name

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            checkpoint("store-write")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- the run -------------------------------------------------------------------------
    def init_run(self, program: Path, config_json: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO runs (id, created, program, config, state) "
                       "VALUES (?, ?, ?, ?, 'running')",
                       (self.run_id, time.time(), str(program), config_json))

    def run_info(self) -> dict:
        row = self.db.execute("SELECT id, created, program, config, state, noise, finished "
                              "FROM runs").fetchone()
        if row is None:
            raise StoreError(f"{self.folder}: the run was never started")
        keys = ("id", "created", "program", "config", "state", "noise", "finished")
        return dict(zip(keys, row, strict=True))

    def set_run(self, **fields: object) -> None:
        with self._tx() as db:
            for key, value in fields.items():
                if key not in ("state", "noise", "finished"):
                    raise StoreError(f"run field {key!r} cannot be set")
                db.execute(f"UPDATE runs SET {key} = ?", (value,))

    # --- variants and generation calls ---------------------------------------------------
    def next_idx(self) -> int:
        (top,) = self.db.execute("SELECT COALESCE(MAX(idx), -1) FROM variants").fetchone()
        return top + 1

    def add_variant(self, *, vid: str, full_hash: str, parent_id: str | None,
                    files: dict[str, str], diff: str, seed_diff: str,
                    call: GenerationCall | None, seeds: list[tuple[int, str]]) -> VariantRow:
        """Write the folder, then the variant, its generation call and its pending evaluations.

        Args:
            seeds: (seed, purpose) of each evaluation to queue.
        """
        idx = self.next_idx()
        folder = self.folder / "variants" / f"{idx:04d}-{vid}"
        if folder.exists():  # debris of a kill before the commit below
            shutil.rmtree(folder)
        for rel, text in files.items():
            (folder / "source" / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / "source" / rel).write_text(text)
        (folder / "parent.diff").write_text(diff)
        (folder / "seed.diff").write_text(seed_diff)
        if call is not None:
            (folder / "prompt.txt").write_text(call.prompt)
            (folder / "response.txt").write_text(call.response)
        now = time.time()
        with self._tx() as db:
            call_id = self._insert_call(db, call, parent_id, "variant", vid, None)
            db.execute("INSERT INTO variants (id, idx, hash, parent_id, call_id, created, folder, "
                       "diff, seed_diff) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (vid, idx, full_hash, parent_id, call_id, now,
                        str(folder.relative_to(self.folder)), diff, seed_diff))
            for seed, purpose in seeds:
                db.execute("INSERT INTO evaluations (variant_id, seed, purpose, state) "
                           "VALUES (?, ?, ?, 'pending')", (vid, seed, purpose))
        return self.variant(vid)

    def add_call(self, call: GenerationCall | None, parent_id: str | None, outcome: str,
                 variant_id: str | None = None, rejection: str | None = None) -> None:
        """Record a generation call that made no new variant (``rejected`` or ``duplicate``)."""
        with self._tx() as db:
            self._insert_call(db, call, parent_id, outcome, variant_id, rejection)

    @staticmethod
    def _insert_call(db: sqlite3.Connection, call: GenerationCall | None, parent_id: str | None,
                     outcome: str, variant_id: str | None, rejection: str | None) -> int | None:
        if call is None and outcome == "variant":
            return None  # the seed: no model wrote it
        c = call or GenerationCall(backend="?", model="?", prompt="", response="")
        cur = db.execute(
            "INSERT INTO generation_calls (created, backend, model, parent_id, outcome, "
            "variant_id, rejection, error, latency_s, tokens_in, tokens_out) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), c.backend, c.model, parent_id, outcome, variant_id, rejection,
             c.error, c.latency_s, c.tokens_in, c.tokens_out))
        return cur.lastrowid

    def variant(self, vid: str) -> VariantRow:
        row = self.db.execute(f"SELECT {_VCOLS} FROM variants WHERE id = ? OR id LIKE ?",
                              (vid, f"{vid}%")).fetchall()
        if len(row) != 1:
            raise StoreError(f"run {self.run_id} has {len(row)} variants matching {vid!r}")
        return self._variant(row[0])

    def variants(self) -> list[VariantRow]:
        rows = self.db.execute(f"SELECT {_VCOLS} FROM variants ORDER BY idx").fetchall()
        return [self._variant(r) for r in rows]

    def _variant(self, r: tuple) -> VariantRow:
        return VariantRow(id=r[0], idx=r[1], parent_id=r[2], folder=self.folder / r[3],
                          diff=r[4] or "", seed_diff=r[5] or "", created=r[6],
                          collected=bool(r[7]), verdict=r[8], value=r[9])

    def seen_hashes(self) -> set[str]:
        return {h for (h,) in self.db.execute("SELECT hash FROM variants")}

    def calls(self) -> list[dict]:
        cur = self.db.execute("SELECT outcome, backend, parent_id, variant_id, rejection, "
                              "latency_s FROM generation_calls ORDER BY id")
        keys = ("outcome", "backend", "parent_id", "variant_id", "rejection", "latency_s")
        return [dict(zip(keys, r, strict=True)) for r in cur]

    def set_verdict(self, vid: str, verdict: str, value: float | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE variants SET verdict = ?, value = ? WHERE id = ?",
                       (verdict, value, vid))

    def mark_collected(self, vid: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE variants SET collected = 1 WHERE id = ?", (vid,))

    # --- evaluations ---------------------------------------------------------------------
    def add_evaluation(self, vid: str, seed: int, purpose: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO evaluations (variant_id, seed, purpose, state) "
                       "VALUES (?, ?, ?, 'pending')", (vid, seed, purpose))

    def eval_folder(self, ev: EvalRow) -> Path:
        return self.variant(ev.variant_id).folder / f"eval-{ev.seed}"

    def finish_evaluation(self, ev: EvalRow, result: VariantResult, metric: float | None) -> None:
        """Write ``result.json`` into the evaluation's folder, then commit it as done."""
        folder = self.eval_folder(ev)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "result.json.tmp"
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.replace(folder / "result.json")
        checkpoint("record")
        duration = sum(s.duration_s for s in result.stages)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE evaluations SET state = 'done', status = ?, metric = ?, result = ?, "
                "duration_s = ?, finished = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'pending'",
                (result.status.value, metric, result.model_dump_json(), duration, time.time(),
                 ev.id))
            if cur.rowcount != 1:
                raise StoreError(f"evaluation {ev.id} was already finished",
                                 variant_id=ev.variant_id)

    def retry_evaluation(self, ev: EvalRow) -> None:
        """Count an infrastructure failure; the evaluation stays pending."""
        with self._tx() as db:
            db.execute("UPDATE evaluations SET attempts = attempts + 1 WHERE id = ?", (ev.id,))

    def evaluations(self, state: str | None = None) -> list[EvalRow]:
        sql = f"SELECT {_ECOLS} FROM evaluations"
        rows = self.db.execute(sql + (" WHERE state = ?" if state else "") + " ORDER BY id",
                               (state,) if state else ()).fetchall()
        return [_eval(r) for r in rows]

    def remove_debris(self) -> list[Path]:
        """Delete variant folders that no committed row names (a kill before the commit)."""
        known = {v.folder for v in self.variants()}
        debris = [p for p in sorted((self.folder / "variants").glob("*"))
                  if p.is_dir() and p not in known]
        for path in debris:
            shutil.rmtree(path)
        return debris


_VCOLS = "id, idx, parent_id, folder, diff, seed_diff, created, collected, verdict, value"
_ECOLS = ("id, variant_id, seed, purpose, state, attempts, status, metric, duration_s, finished, "
          "json_extract(result, '$.error')")
"""The error is read in SQL: the loop lists evaluations each step, and a result can be large."""


def _eval(r: tuple) -> EvalRow:
    return EvalRow(id=r[0], variant_id=r[1], seed=r[2], purpose=r[3], state=r[4], attempts=r[5],
                   status=Status(r[6]) if r[6] else None, metric=r[7], duration_s=r[8],
                   finished=r[9], error=r[10])
