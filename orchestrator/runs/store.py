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

This is the only module that speaks SQL. Each write returns the rows it made, and each query
filters in SQL, so no caller reads a table back to find what it has just written.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.checkpoints import checkpoint
from orchestrator.errors import StoreError
from orchestrator.outcomes import Status
from orchestrator.runs.rows import EvalRow, VariantRecord, VariantRow
from orchestrator.runs.schema import DB, connect

if TYPE_CHECKING:  # the readers (``selfprog status``) start without the models
    from orchestrator.generators.base import GenerationCall
    from orchestrator.result import VariantResult

_EVALS = ("SELECT e.id, e.variant_id, e.seed, e.purpose, e.state, e.attempts, e.status, "
          "e.metric, e.duration_s, e.finished, json_extract(e.result, '$.error') AS error, "
          "v.folder AS variant_folder "
          "FROM evaluations AS e JOIN variants AS v ON v.id = e.variant_id")
"""The error is read in SQL (a result can be large) and the folder joined (no second lookup)."""


def find_run(run: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A run folder from its id (under ``runs_dir``) or its path.

    Raises:
        StoreError: no such run.
    """
    for candidate in (Path(run), runs_dir / str(run)):
        if (candidate / DB).is_file():
            return candidate
    raise StoreError(f"no run {run!r} (looked in {runs_dir} and at the path itself)")


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
        self._db = connect(path)

    @property
    def run_id(self) -> str:
        return self.folder.name

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._db.in_transaction:  # a signal landed between BEGIN and the block below
            self._db.execute("ROLLBACK")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            checkpoint("store-write")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- the run -------------------------------------------------------------------------
    def init_run(self, program: Path | str, config_json: str, program_hash: str | None = None
                 ) -> None:
        """Record the run: its program (a path relative to the run folder: the copy), its
        config and the program's hash (what a resume compares)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO runs (id, created, program, config, state, "
                       "program_hash) VALUES (?, ?, ?, ?, 'running', ?)",
                       (self.run_id, time.time(), str(program), config_json, program_hash))

    def run_info(self) -> dict[str, Any]:
        """id, created, program, config (JSON), state, noise, finished and program_hash."""
        row = self._db.execute("SELECT id, created, program, config, state, noise, finished, "
                               "program_hash FROM runs").fetchone()
        if row is None:
            raise StoreError(f"{self.folder}: the run was never started")
        return dict(row)

    def program_root(self) -> Path:
        """Where the readers load the run's program from: the copy in the run folder (a
        relative path, so the folder may move), or the absolute path an older run recorded."""
        return self.folder / self.run_info()["program"]

    def set_run(self, **fields: object) -> None:
        with self._tx() as db:
            for key, value in fields.items():
                if key not in ("state", "noise", "finished", "program", "program_hash"):
                    raise StoreError(f"run field {key!r} cannot be set")
                db.execute(f"UPDATE runs SET {key} = ?", (value,))

    def note(self, kind: str, text: str) -> None:
        """Record something that happened to the run as a whole (e.g. ``program-changed``,
        ``interrupted``): it stays with the run and the readers show it."""
        with self._tx() as db:
            db.execute("INSERT INTO run_notes (created, kind, text) VALUES (?, ?, ?)",
                       (time.time(), kind, text))

    def notes(self) -> list[dict[str, Any]]:
        """The run's notes, oldest first: created, kind, text."""
        return [dict(r) for r in self._db.execute(
            "SELECT created, kind, text FROM run_notes ORDER BY id")]

    # --- variants and generation calls ---------------------------------------------------
    def add_variant(self, *, vid: str, full_hash: str, parent_id: str | None,
                    files: dict[str, str], diff: str, seed_diff: str,
                    call: GenerationCall | None, seeds: list[tuple[int, str]]) -> VariantRecord:
        """Write the folder, then the variant, its generation call and its pending evaluations.

        Args:
            seeds: (seed, purpose) of each evaluation to queue.

        Returns:
            The variant and its pending evaluations (the jobs to submit).
        """
        (idx,) = self._db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM variants").fetchone()
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
            db.executemany("INSERT INTO evaluations (variant_id, seed, purpose, state) "
                           "VALUES (?, ?, ?, 'pending')",
                           [(vid, seed, purpose) for seed, purpose in seeds])
            return self._record(vid)

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
        if call is None:
            from orchestrator.generators.base import GenerationCall

            call = GenerationCall(backend="?", model="?", prompt="", response="")
        c = call
        cur = db.execute(
            "INSERT INTO generation_calls (created, backend, model, parent_id, outcome, "
            "variant_id, rejection, error, latency_s, tokens_in, tokens_out, tokens_reasoning, "
            "finish_reason, kind, generator, prompt, response) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), c.backend, c.model, parent_id, outcome, variant_id, rejection,
             c.error, c.latency_s, c.tokens_in, c.tokens_out, c.tokens_reasoning,
             c.finish_reason, c.kind, c.generator, c.prompt, c.response))
        return cur.lastrowid

    def variant(self, vid: str) -> VariantRow:
        """The variant with this id, or the one variant whose id starts with it."""
        rows = self._db.execute("SELECT * FROM variants WHERE id = ?", (vid,)).fetchall() or \
            self._db.execute("SELECT * FROM variants WHERE substr(id, 1, ?) = ?",
                             (len(vid), vid)).fetchall()
        if len(rows) != 1:
            raise StoreError(f"run {self.run_id} has {len(rows)} variants matching {vid!r}")
        return VariantRow.from_row(self.folder, rows[0])

    def seed_variant(self) -> VariantRow | None:
        """The run's first variant (the program as shipped), or None before it is recorded."""
        row = self._db.execute("SELECT * FROM variants ORDER BY idx LIMIT 1").fetchone()
        return None if row is None else VariantRow.from_row(self.folder, row)

    def best_admitted(self, minimize: bool) -> VariantRow | None:
        """The best variant selection admitted (ties to the earlier one), found in SQL."""
        order = "ASC" if minimize else "DESC"
        row = self._db.execute(
            "SELECT * FROM variants WHERE verdict = 'admitted' AND value IS NOT NULL "
            f"ORDER BY value {order}, idx ASC LIMIT 1").fetchone()
        return None if row is None else VariantRow.from_row(self.folder, row)

    def counts(self) -> dict[str, Any]:
        """The run's numbers, counted in SQL (a status of a 2,000-variant run reads no rows
        whole): variants, evaluations, pending, statuses and calls by outcome."""
        (variants,) = self._db.execute("SELECT COUNT(*) FROM variants").fetchone()
        evals = self._db.execute("SELECT COUNT(*) AS n, COALESCE(SUM(state = 'pending'), 0) "
                                 "AS pending FROM evaluations").fetchone()
        statuses = {r[0]: int(r[1]) for r in self._db.execute(
            "SELECT status, COUNT(*) FROM evaluations WHERE status IS NOT NULL "
            "GROUP BY status ORDER BY status")}
        calls = {r[0]: int(r[1]) for r in self._db.execute(
            "SELECT outcome, COUNT(*) FROM generation_calls GROUP BY outcome ORDER BY outcome")}
        return {"variants": int(variants), "evaluations": int(evals["n"]),
                "pending": int(evals["pending"]), "statuses": statuses, "calls": calls}

    def variant_by_index(self, idx: int) -> VariantRow:
        """The variant numbered ``idx`` (``#idx`` in lineage: 0 is the seed)."""
        row = self._db.execute("SELECT * FROM variants WHERE idx = ?", (idx,)).fetchone()
        if row is None:
            raise StoreError(f"run {self.run_id} has no variant #{idx}")
        return VariantRow.from_row(self.folder, row)

    def variants(self) -> list[VariantRow]:
        rows = self._db.execute("SELECT * FROM variants ORDER BY idx")
        return [VariantRow.from_row(self.folder, r) for r in rows]

    def ancestors(self, vid: str) -> list[VariantRow]:
        """The variant's parent, its parent's parent ... up to the seed (nearest first)."""
        rows = self._db.execute(
            "WITH RECURSIVE line(id, depth) AS ("
            " SELECT parent_id, 1 FROM variants WHERE id = ?"
            " UNION ALL SELECT v.parent_id, line.depth + 1 FROM variants AS v"
            " JOIN line ON v.id = line.id)"
            " SELECT v.* FROM line JOIN variants AS v ON v.id = line.id ORDER BY line.depth",
            (vid,))
        return [VariantRow.from_row(self.folder, r) for r in rows]

    def children(self, parent_id: str, last: int = 20) -> list[VariantRow]:
        """The ``last`` variants made from ``parent_id``, oldest first: what was tried from it."""
        rows = self._db.execute("SELECT * FROM variants WHERE parent_id = ? ORDER BY idx DESC "
                                "LIMIT ?", (parent_id, last)).fetchall()
        return [VariantRow.from_row(self.folder, r) for r in reversed(rows)]

    def rejected_calls(self, last: int) -> list[dict[str, Any]]:
        """The ``last`` generation calls whose answer was rejected, oldest first: their parent
        and reason (not their text)."""
        rows = self._db.execute("SELECT id, parent_id, rejection FROM generation_calls "
                                "WHERE outcome = 'rejected' ORDER BY id DESC LIMIT ?",
                                (last,)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def seen_hashes(self) -> set[str]:
        """The content hash of every variant, to refuse a proposal that repeats one."""
        return {r["hash"] for r in self._db.execute("SELECT hash FROM variants")}

    def calls(self) -> list[dict[str, Any]]:
        """Every call without its prompt and response text (see ``call`` for those)."""
        cur = self._db.execute("SELECT id, created, outcome, backend, model, parent_id, "
                               "variant_id, rejection, error, latency_s, tokens_in, tokens_out, "
                               "tokens_reasoning, finish_reason, kind, generator "
                               "FROM generation_calls ORDER BY id")
        return [dict(r) for r in cur]

    def call(self, call_id: int) -> dict[str, Any]:
        """One call whole: prompt and raw response included."""
        row = self._db.execute("SELECT * FROM generation_calls WHERE id = ?",
                               (call_id,)).fetchone()
        if row is None:
            raise StoreError(f"run {self.run_id} has no generation call {call_id}")
        return dict(row)

    def call_totals(self) -> dict[str, Any]:
        """What the run's generation calls add up to: ``calls``, ``variants`` (calls that made
        a new variant), ``errors`` (calls with no answer), token sums ``tokens_in``,
        ``tokens_out``, ``tokens_reasoning``, and ``rejections``: rejected calls by reason
        (the word before the first colon; ``duplicate`` for repeats), most frequent first."""
        row = self._db.execute(
            "SELECT COUNT(*) AS calls, COALESCE(SUM(outcome = 'variant'), 0) AS variants, "
            "COALESCE(SUM(error IS NOT NULL AND error != ''), 0) AS errors, "
            "COALESCE(SUM(tokens_in), 0) AS tokens_in, COALESCE(SUM(tokens_out), 0) AS tokens_out,"
            " COALESCE(SUM(tokens_reasoning), 0) AS tokens_reasoning "
            "FROM generation_calls").fetchone()
        totals: dict[str, Any] = {k: int(row[k]) for k in row.keys()}
        cur = self._db.execute(
            "SELECT CASE WHEN outcome = 'duplicate' THEN 'duplicate' "
            "WHEN instr(COALESCE(rejection, ''), ':') > 0 "
            "THEN substr(rejection, 1, instr(rejection, ':') - 1) "
            "ELSE COALESCE(NULLIF(rejection, ''), outcome) END AS reason, COUNT(*) AS n "
            "FROM generation_calls WHERE outcome != 'variant' GROUP BY reason "
            "ORDER BY n DESC, reason")
        totals["rejections"] = {r["reason"]: int(r["n"]) for r in cur}
        return totals

    def last_rejection(self) -> str | None:
        """The newest rejected call's rejection text (or error), for a message."""
        row = self._db.execute(
            "SELECT COALESCE(NULLIF(rejection, ''), error, outcome) AS why FROM generation_calls "
            "WHERE outcome != 'variant' ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else str(row["why"])

    def call_count(self) -> int:
        """How many generation calls the run made (any outcome); seeds the next one."""
        (n,) = self._db.execute("SELECT COUNT(*) FROM generation_calls").fetchone()
        return int(n)

    def set_verdict(self, vid: str, verdict: str, value: float | None, *,
                    noise: float | None = None, recheck_seed: int | None = None
                    ) -> EvalRow | None:
        """Write selection's verdict on a settled variant, and what it implies, at once.

        Args:
            noise: the run's noise floor near its best, when this verdict changed it.
            recheck_seed: queue a ``recheck`` evaluation of the variant with this seed.

        Returns:
            The queued recheck evaluation (a job to submit), or None.
        """
        with self._tx() as db:
            cur = db.execute("UPDATE variants SET verdict = ?, value = ? WHERE id = ?",
                             (verdict, value, vid))
            if cur.rowcount != 1:
                raise StoreError(f"run {self.run_id} has no variant {vid!r} to judge")
            if noise is not None:
                db.execute("UPDATE runs SET noise = ?", (noise,))
            if recheck_seed is None:
                return None
            (row,) = db.execute("INSERT INTO evaluations (variant_id, seed, purpose, state) "
                                "VALUES (?, ?, 'recheck', 'pending') RETURNING id",
                                (vid, recheck_seed)).fetchall()
            return self.evaluation(row["id"])

    def mark_collected(self, vid: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE variants SET collected = 1 WHERE id = ?", (vid,))

    def images_by_variant(self) -> dict[str, set[str]]:
        """The image tags each variant's finished evaluations ran in (read in SQL: a result can
        be large)."""
        out: dict[str, set[str]] = {}
        for r in self._db.execute(
                "SELECT variant_id, json_extract(result, '$.image') AS image FROM evaluations "
                "WHERE state = 'done' AND COALESCE(json_extract(result, '$.image'), '') != ''"):
            out.setdefault(r["variant_id"], set()).add(r["image"])
        return out

    # --- evaluations ---------------------------------------------------------------------
    def evaluation(self, eval_id: int) -> EvalRow:
        rows = self._evals("WHERE e.id = ?", (eval_id,))
        if not rows:
            raise StoreError(f"run {self.run_id} has no evaluation {eval_id}")
        return rows[0]

    def evaluations(self, state: str | None = None, variant_id: str | None = None
                    ) -> list[EvalRow]:
        """Evaluations in the order they were queued, of one state and/or one variant."""
        where = [(col, arg) for col, arg in (("e.state", state), ("e.variant_id", variant_id))
                 if arg is not None]
        sql = " AND ".join(f"{col} = ?" for col, _arg in where)
        return self._evals(f"WHERE {sql}" if sql else "", tuple(arg for _col, arg in where))

    def failed_evaluations(self, last: int) -> list[EvalRow]:
        """The ``last`` most recently queued finished evaluations that did not end ``ok``,
        oldest first (what the generator is told to avoid)."""
        rows = self._evals("WHERE e.state = 'done' AND e.status IS NOT ? ORDER BY e.id DESC "
                           "LIMIT ?", (Status.OK.value, last), order=False)
        return rows[::-1]

    def settled(self) -> list[VariantRecord]:
        """Every variant whose evaluations are all done, in the order its last one finished:
        the order the loop offered them to selection, so resume can offer them again."""
        order = [r["variant_id"] for r in self._db.execute(
            "SELECT variant_id FROM evaluations GROUP BY variant_id "
            "HAVING SUM(state = 'pending') = 0 ORDER BY MAX(finished), MIN(id)")]
        variants = {v.id: v for v in self.variants()}
        evals: dict[str, list[EvalRow]] = {}
        for ev in self.evaluations():
            evals.setdefault(ev.variant_id, []).append(ev)
        return [VariantRecord(variants[vid], tuple(evals[vid])) for vid in order]

    def finish_evaluation(self, ev: EvalRow, result: VariantResult,
                          metric: float | None) -> VariantRecord:
        """Write ``result.json`` into the evaluation's folder, then commit it as done.

        Returns:
            Its variant with all its evaluations, as committed (``settled`` once all are done).

        Raises:
            StoreError: the evaluation was already finished.
        """
        ev.folder.mkdir(parents=True, exist_ok=True)
        tmp = ev.folder / "result.json.tmp"
        tmp.write_text(result.model_dump_json(indent=2))
        tmp.replace(ev.folder / "result.json")
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
            return self._record(ev.variant_id)

    def retry_evaluation(self, ev: EvalRow) -> EvalRow:
        """Count an infrastructure failure; the evaluation stays pending and is returned."""
        with self._tx() as db:
            db.execute("UPDATE evaluations SET attempts = attempts + 1 WHERE id = ?", (ev.id,))
            return self.evaluation(ev.id)

    def remove_debris(self) -> list[Path]:
        """Delete variant folders that no committed row names (a kill before the commit)."""
        known = {v.folder for v in self.variants()}
        debris = [p for p in sorted((self.folder / "variants").glob("*"))
                  if p.is_dir() and p not in known]
        for path in debris:
            shutil.rmtree(path)
        return debris

    # --- reading rows --------------------------------------------------------------------
    def _evals(self, where: str, args: tuple[object, ...], *, order: bool = True
               ) -> list[EvalRow]:
        sql = f"{_EVALS} {where}" + (" ORDER BY e.id" if order else "")
        return [EvalRow.from_row(self.folder, r) for r in self._db.execute(sql, args)]

    def _record(self, vid: str) -> VariantRecord:
        """A variant and its evaluations; inside a write, what that write is about to commit."""
        return VariantRecord(self.variant(vid), tuple(self.evaluations(variant_id=vid)))

