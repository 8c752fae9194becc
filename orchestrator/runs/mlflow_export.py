"""A run as an MLflow experiment: one MLflow run per variant (``selfprog export mlflow``).

Each variant whose verdict is final (admitted or rejected; the seed once measured) becomes one
MLflow run named ``#idx id``: params are its diff summary, parent and declared settings
(``setting.NAME``); metrics its mean value (under the metric's name) and each evaluation's value
and duration (step = the evaluation's seed); tags its status, verdict and the backend and model
that wrote it, and ``mlflow.parentRunId`` so the lineage nests in MLflow's UI; artifacts its
diffs and each evaluation's logs and ``result.json``.

The default tracking store is a SQLite file in the run folder (``mlflow.db``; MLflow 3 refuses
its old file store), artifacts beside it (``mlartifacts/``), so it works offline and travels
with the run. Exporting again logs only what is new: a variant is found by its
``selfprog.variant`` tag, and one whose logging was cut short (still ``RUNNING``: it is ended
last) is deleted and logged again. ``MlflowTracker`` does the same live, as variants land.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.generators.searchspace import find_settings
from orchestrator.program import Program
from orchestrator.runs.store import Store, VariantRow
from orchestrator.runs.summary import diff_summary

log = logging.getLogger(__name__)

FINAL = ("admitted", "rejected")
"""Verdicts after which a variant no longer changes."""
_VARIANT = "selfprog.variant"


def default_uri(run: Path) -> str:
    return f"sqlite:///{(run / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class Exported:
    uri: str
    experiment: str
    experiment_id: str
    logged: int
    """Variants logged by this call."""
    already: int
    """Variants an earlier export (or live tracking) had logged."""
    unsettled: int
    """Variants not logged because their verdict is not final yet."""


class MlflowExport:
    """One run's MLflow experiment, opened (created if missing) on construction.

    Raises:
        ConfigError: mlflow is not installed, or the tracking store cannot be opened.
    """

    def __init__(self, run: Path, program: Program, tracking_uri: str | None = None):
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise ConfigError("MLflow export needs mlflow: pip install 'selfprog[mlflow]'"
                              ) from exc
        self.run, self.program = run, program
        self.uri = tracking_uri or default_uri(run)
        self.name = f"selfprog/{program.name}/{run.name}"
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(self.name)
        if found is not None:
            self.experiment_id = found.experiment_id
        else:
            local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
            self.experiment_id = self.client.create_experiment(
                self.name, tags={"selfprog.run": run.name, "selfprog.program": program.name},
                artifact_location=(run / "mlartifacts").resolve().as_uri() if local else None)
        self.logged = self._logged()

    def _logged(self) -> dict[str, str]:
        """Variant id -> MLflow run id of every complete earlier logging; incomplete ones
        (a kill mid-logging) are deleted, to be logged again."""
        out: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000,
                                           page_token=token)
            for r in page:
                vid = r.data.tags.get(_VARIANT)
                if vid and r.info.status in ("FINISHED", "FAILED"):
                    out[vid] = r.info.run_id
                elif vid:
                    self.client.delete_run(r.info.run_id)
            token = page.token
            if not token:
                return out

    def sync(self, store: Store) -> Exported:
        """Log every final variant not logged yet, in index order (a parent before its
        children)."""
        before, unsettled, calls = len(self.logged), 0, None
        for v in store.variants():
            if v.id in self.logged:
                continue
            if v.verdict not in FINAL:
                unsettled += 1
                continue
            if calls is None:
                calls = {c["variant_id"]: c for c in store.calls()
                         if c["outcome"] == "variant" and c["variant_id"]}
            self.logged[v.id] = self._log(store, v, calls.get(v.id))
        return Exported(self.uri, self.name, self.experiment_id, len(self.logged) - before,
                        before, unsettled)

    def _log(self, store: Store, v: VariantRow, call: dict | None) -> str:
        from mlflow.entities import Metric, Param

        evals = store.evaluations(variant_id=v.id)
        failed = next((e.status.value for e in evals if e.status and e.status.value != "ok"),
                      None)
        status = failed or ("ok" if evals else "pending")
        tags = {_VARIANT: v.id, "selfprog.run": store.run_id, "selfprog.idx": str(v.idx),
                "status": status, "verdict": v.verdict or "", "parent": v.parent_id or ""}
        if call is not None:
            tags |= {"backend": call.get("backend") or "", "model": call.get("model") or "",
                     "kind": call.get("kind") or "", "generator": call.get("generator") or ""}
        if v.parent_id in self.logged:
            tags["mlflow.parentRunId"] = self.logged[v.parent_id]
        run = self.client.create_run(self.experiment_id, start_time=int(v.created * 1000),
                                     tags=tags, run_name=f"#{v.idx} {v.id}")
        rid = run.info.run_id
        name = self.program.manifest.metric.name
        params = {"diff_summary": diff_summary(v.diff, 500) if v.diff else "(the seed)",
                  "parent": v.parent_id or "-", "evaluations": str(len(evals))}
        params |= settings(v)
        now = int(time.time() * 1000)
        metrics = [Metric(name, v.value, now, 0)] if v.value is not None else []
        for e in evals:
            stamp = int((e.finished or time.time()) * 1000)
            if e.metric is not None:
                metrics.append(Metric(f"{name}.by_seed", e.metric, stamp, e.seed))
            if e.duration_s is not None:
                metrics.append(Metric("duration_s", e.duration_s, stamp, e.seed))
        if call is not None:
            metrics += [Metric(k, float(call.get(k) or 0), now, 0)
                        for k in ("tokens_in", "tokens_out")]
        self.client.log_batch(rid, metrics=metrics,
                              params=[Param(k, str(p)[:6000]) for k, p in params.items()])
        for rel in ("parent.diff", "seed.diff"):
            if (v.folder / rel).is_file():
                self.client.log_artifact(rid, str(v.folder / rel))
        for e in evals:
            for path in sorted(e.folder.glob("*.log")) + sorted(e.folder.glob("result.json")):
                self.client.log_artifact(rid, str(path), f"eval-{e.seed}")
        self.client.set_terminated(rid, "FINISHED" if status == "ok" else "FAILED")
        return str(rid)


def settings(v: VariantRow) -> dict[str, Any]:
    """The declared search-space settings of a variant's editable Python files (``setting.NAME``;
    nothing once ``gc`` has removed its folder)."""
    out: dict[str, Any] = {}
    for path, text in v.files().items() if v.folder.is_dir() else ():
        if path.endswith(".py"):
            out |= {f"setting.{s.name}": s.value for s in find_settings(path, text)
                    if s.kind != "generic"}
    return out


def export_run(run: Path, program: Program, tracking_uri: str | None = None) -> Exported:
    """Log a run's final variants to MLflow (``selfprog export mlflow``); idempotent."""
    store = Store(run)
    try:
        return MlflowExport(run, program, tracking_uri).sync(store)
    finally:
        store.close()


class MlflowTracker:
    """Live ``[tracking] mlflow = true``: an observer of the loop that logs each variant once
    its verdict is final, and the rest when the loop stops.

    MLflow failing must never stop an evolution: every error is a warning, and after
    ``GIVE_UP`` in a row the tracker stops trying (``selfprog export mlflow`` catches up later).
    """

    GIVE_UP = 3

    def __init__(self, run: Path, program: Program, tracking_uri: str | None = None):
        self.run, self.program, self.uri = run, program, tracking_uri
        self.export: MlflowExport | None = None
        self.failures = 0
        self.seen = -1
        self.store: Any = None

    def start(self, evolution: Any) -> None:
        self.store = evolution.store
        self._try(lambda: setattr(self, "export", MlflowExport(self.run, self.program,
                                                                 self.uri)))

    def tick(self, evolution: Any) -> None:
        judged = len(evolution.judged)
        if judged != self.seen:  # something new was judged since the last look
            self.seen = judged
            self._sync()

    def stop(self) -> None:
        self._sync()

    def _sync(self) -> None:
        if self.export is not None:
            export = self.export
            self._try(lambda: export.sync(self.store))

    def _try(self, step: Any) -> None:
        if self.failures >= self.GIVE_UP:
            return
        try:
            step()
            self.failures = 0
        except Exception as exc:  # noqa: BLE001 — a third party's failure must not end a run
            self.failures += 1
            log.warning("mlflow tracking failed (%d/%d): %s%s", self.failures, self.GIVE_UP,
                        exc, "; giving up: run `selfprog export mlflow` later"
                        if self.failures >= self.GIVE_UP else "")
