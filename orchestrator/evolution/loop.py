"""The evolve loop: select parents → generate → validate → build → run → record → update.

``Evolution.run`` reads as those verbs; each is a short method below, and the slots, the store and
selection live one level down. Nothing a variant or a generator does raises out of the loop: a bad
proposal is a recorded rejection, a bad variant a status, an engine failure a retried
``infra_error``. Only a config error or a bug stops a run, and a stopped or killed run resumes
from its store.

Recording a result is two store transactions around one pure decision: the result is committed
and the variant comes back with all its evaluations; when they are all done, selection judges it
in memory; then the verdict is committed with any recheck it asks for, which comes back as the
next job. The store's writes return what they made, so the loop never reads back its own writes.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from orchestrator.checkpoints import checkpoint
from orchestrator.errors import ConfigError
from orchestrator.evolution import feedback
from orchestrator.evolution.config import EvolveConfig
from orchestrator.evolution.noise import NoiseFloor
from orchestrator.evolution.selection import Candidate, Population, Verdict, make_strategy
from orchestrator.evolution.slots import Done, Job, Slot, SlotPool
from orchestrator.generators.base import (
    GenerationCall,
    GenerationRequest,
    Generator,
    Parent,
    Proposal,
)
from orchestrator.generators.edits.diffs import unified_diff
from orchestrator.program import Program, variant_hash
from orchestrator.result import Status
from orchestrator.runner import Runner, Variant
from orchestrator.runs.rows import EvalRow, VariantRecord
from orchestrator.runs.store import Store

log = logging.getLogger(__name__)


@runtime_checkable
class SelfImproving(Protocol):
    """A generator that samples from the program's own exported model (the ``self`` backend)."""

    def use(self, folder: str | Path) -> None: ...


Validator = Callable[[Proposal, dict[str, str], set[str]], str | None]
"""(proposal, parent files, seen hashes) → why it is rejected, or None."""


MAX_CALL_ERRORS = 5
"""Generation calls in a row without an answer after which the run stops proposing."""


@dataclass(frozen=True)
class Outcome:
    run_id: str
    reason: str
    best_id: str | None
    best_value: float | None
    seed_value: float | None
    noise: float | None
    utilisation: float


class Evolution:
    """One run: a store, a program, a runner in N slots, a generator and a population."""

    def __init__(self, cfg: EvolveConfig, store: Store, program: Program, runner: Runner,
                 generator: Generator, slots: list[Slot], *, validate: Validator | None = None,
                 sweep: Callable[[str], object] | None = None):
        self.cfg, self.store, self.program, self.generator = cfg, store, program, generator
        self.validate = validate or _check_editable
        self.sweep = sweep
        sel = cfg.selection
        self.population = Population(make_strategy(sel.strategy, sel.population, sel.tournament),
                                     program.manifest.metric.goal, k=sel.k, rechecks=sel.rechecks)
        self.rng = random.Random(cfg.seed)
        self.t0 = time.monotonic()
        self.pool = SlotPool(slots, runner, store.run_id, gate=self._time_left)
        self.slot_gpus = max((len(s.gpu_ids) for s in slots), default=None)
        """GPUs a variant gets (the largest slot's): what generators are told about devices."""
        self.files: dict[str, dict[str, str]] = {}
        self.judged: dict[str, VariantRecord] = {}
        """Every variant selection has judged, as it was then (what feedback reads)."""
        self.evals: dict[int, EvalRow] = {}
        """Every evaluation submitted to the slots, by id, as it was when submitted."""
        self.outstanding = 0
        self.rejections = 0
        self.call_errors = 0
        """Generation calls in a row that got no answer (errors, not rejected answers)."""
        self.durations: list[float] = []
        self.stop_reason: str | None = None
        self._seed_id: str | None = None
        self.floor = NoiseFloor(program.manifest.metric.noise)
        """Rebuilt on resume as the settled variants are offered again, in the same order."""
        self._stored_noise: float | None = store.run_info()["noise"]

    # --- the loop ------------------------------------------------------------------------
    def run(self, on_tick: Callable[[Evolution], None] | None = None) -> Outcome:
        self.start_or_resume()
        try:
            while self.stop_reason is None or self.outstanding:
                self.top_up()
                for done in self.pool.results(timeout=0.0 if self.hungry else 0.5):
                    self.record(done)
                if on_tick:
                    on_tick(self)
        finally:
            self.pool.close()
        return self.finish()

    @property
    def hungry(self) -> bool:
        """Fewer jobs than slots plus ``lookahead``, and the budget not spent."""
        want = len(self.pool.slots) + self.cfg.slots.lookahead
        return self.stop_reason is None and self.outstanding < want

    def top_up(self) -> None:
        """Make one proposal when the slots' queue runs short (results are recorded between
        two generation calls, however slow the generator)."""
        if self.hungry:
            self.stop_reason = self._budget_spent()
            if self.stop_reason is None:
                self.propose(self.select_parent())

    def select_parent(self) -> Parent | None:
        """The parent of the next proposal; None: write the program from its spec (a
        ``from_spec`` run before any draft has run ``ok``)."""
        pick = self.population.pick(self.rng)
        if pick is None and self.cfg.from_spec:
            return None
        vid = pick.variant_id if pick else self.seed_id
        history = tuple((a.id, a.value) for a in reversed(self.store.ancestors(vid)))
        metrics = {self.metric: pick.value} if pick and pick.value is not None else {}
        record = self.judged.get(vid)
        return Parent(vid, self.files[vid], metrics, history,
                      profile=feedback.profile(record.evaluations[0] if record else None))

    def request(self, parent: Parent | None, seen: set[str]) -> GenerationRequest:
        """What the generator is told: the parent, what was tried from it and how it did, why
        recent attempts failed, the run's terms, and a focus that turns with every call."""
        calls = self.store.call_count()
        prompt = self.cfg.generator.prompt
        tried: tuple[feedback.Tried, ...] = ()
        if parent is not None:
            value = parent.metrics.get(self.metric)
            tried = feedback.tried(self.store, parent.variant_id, self.judged,
                                   self.program.manifest.metric.goal, value, self.noise,
                                   prompt.max_tried)
        return GenerationRequest(
            self.program, (parent,) if parent is not None else (),
            feedback.failures(self.store, prompt.max_failures), n=1,
            seed=self.cfg.seed + calls, seen=frozenset(seen), tried=tried,
            facts=feedback.run_facts(self.program, self.noise, self.slot_gpus),
            focus=feedback.focus(calls),
            from_spec=parent is None)

    def propose(self, parent: Parent | None) -> None:
        """Generate one proposal from ``parent`` (None: from the spec), validate it and record
        it (queued to run).

        A generator reports what went wrong with a model's output as a rejected proposal; an
        exception out of it is a bug and stops the run (which resumes from the store).
        """
        seen = self.store.seen_hashes()
        request = self.request(parent, seen)
        checkpoint("generate")
        proposals = self.generator.propose(request)
        parent_id = parent.variant_id if parent is not None else None
        if not proposals:
            call = GenerationCall(self.generator.name, "", "", "", error="no proposal returned")
            self.store.add_call(call, parent_id, "error")
            self.rejections += 1
        for proposal in proposals:
            if parent is None and proposal.call is not None:
                proposal.call.kind = "spec"
            self.admit(proposal, parent, seen)
        self._note_call_errors(proposals)

    def admit(self, proposal: Proposal, parent: Parent | None, seen: set[str]) -> None:
        """Record a proposal: rejected, a duplicate of a hash in ``seen``, or a new variant
        queued to run (its hash then joins ``seen`` for the next proposal of the batch)."""
        parent_id = parent.variant_id if parent is not None else None
        before = parent.files if parent is not None else self.files[self.seed_id]
        reason = proposal.rejection or self.validate(proposal, before, seen)
        if reason is not None or proposal.files is None:
            self.store.add_call(proposal.call, parent_id, "rejected",
                                rejection=reason or "no files")
            self.rejections += 1
            return
        full = variant_hash(proposal.files)
        if full in seen:
            self.store.add_call(proposal.call, parent_id, "duplicate", variant_id=full[:16])
            self.rejections += 1
            return
        self.rejections = 0
        seen.add(full)
        self.add_variant(proposal.files, parent_id, proposal.call, [(self.cfg.seed, "first")],
                         drafted=parent is None)

    def record(self, done: Done) -> None:
        """Store a finished evaluation (or queue it again), then settle its variant."""
        self.outstanding -= 1
        if done.error is not None:
            self.stop_reason = self.stop_reason or f"error: {done.error}"
            raise done.error
        ev = self.evals[done.job.eval_id]
        if done.result is None:  # not started: the time budget ran out
            self.stop_reason = self.stop_reason or "wall time"
            return
        self.durations.append(done.seconds)
        result = done.result
        if result.status is Status.INFRA_ERROR and ev.attempts < self.cfg.slots.infra_retries:
            self.submit(self.store.retry_evaluation(ev))
            return
        ok = result.status is Status.OK and self.metric in result.metrics
        self.settle(self.store.finish_evaluation(ev, result,
                                                 result.metrics[self.metric] if ok else None))

    def settle(self, record: VariantRecord) -> None:
        """Once all of a variant's evaluations are done: selection judges it, the verdict is
        stored with the recheck it may ask for, and the recheck is queued."""
        if not record.settled:
            return
        vid, evs = record.variant.id, record.evaluations
        found = [m for m in record.metrics if m is not None]
        value = statistics.fmean(found) if len(found) == len(evs) else None
        if value is not None and len(found) > 1:  # the seed's noise seeds, or a recheck
            self.floor.add(vid, found)
        best = self.population.best
        noise = self.floor.at(best.value if best is not None else value)
        verdict = self.population.consider(Candidate(vid, value, len(evs), record.variant.idx),
                                           noise)
        recheck = max(e.seed for e in evs) + 1 if verdict is Verdict.RECHECK else None
        now = self.noise  # near the best, after this verdict
        measured = now if now is not None and now != self._stored_noise else None
        follow_up = self.store.set_verdict(vid, verdict.value, value, noise=measured,
                                           recheck_seed=recheck)
        if measured is not None:
            self._stored_noise = measured
        self.judged[vid] = VariantRecord(
            dataclasses.replace(record.variant, verdict=verdict.value, value=value), evs)
        best = self.population.best
        if verdict is Verdict.ADMITTED and best is not None and best.variant_id == vid:
            self.crown(evs[0].folder / "artifacts")
        if follow_up is not None:
            self.submit(follow_up)

    def crown(self, artifacts: Path) -> None:
        """A new best: a generator that is the program itself now samples from its model."""
        if not isinstance(self.generator, SelfImproving):
            return
        try:
            self.generator.use(artifacts)
        except ConfigError as exc:  # its export fails the host-side checks (never loaded here)
            log.warning("the self generator keeps its model: %s", exc)

    # --- start, resume, finish -----------------------------------------------------------
    def start_or_resume(self) -> None:
        if self.sweep is not None:  # containers of this run, or of any dead orchestrator
            self.sweep(self.store.run_id)
        self.store.set_run(state="running")
        rows = self.store.variants()
        if not rows:
            n = 1 if self.program.manifest.metric.noise is not None else \
                self.cfg.selection.noise_seeds
            purpose = "first" if n == 1 else "noise"
            seeds = [(self.cfg.seed + i, purpose) for i in range(n)]
            if self.cfg.from_spec:  # the shipped source is recorded, never run nor shown
                seeds = []
            self._seed_id = self.add_variant(self.program.source_files(), None, None, seeds)
            return
        self._seed_id = rows[0].id
        for path in self.store.remove_debris():
            log.info("removed %s: a kill left it before its variant was recorded", path)
        for row in rows:
            self.files[row.id] = row.files()
        for record in self.store.settled():  # the population, rebuilt in the order it grew
            self.settle(record)
        for ev in self.store.evaluations("pending"):
            if ev.id not in self.evals:
                self.submit(ev)

    def finish(self) -> Outcome:
        best = self.population.best
        seed = self.store.variant(self.seed_id)
        self.store.set_run(state="finished", finished=time.time())
        return Outcome(self.store.run_id, self.stop_reason or "done",
                       best.variant_id if best else None, best.value if best else None,
                       seed.value, self.noise, self.pool.utilisation())

    # --- details -------------------------------------------------------------------------
    def add_variant(self, files: dict[str, str], parent_id: str | None,
                    call: GenerationCall | None, seeds: list[tuple[int, str]],
                    drafted: bool = False) -> str:
        """Store a new variant with its evaluations queued, submit them, and return its id.
        A ``drafted`` one was written from the spec: no parent, its diff is against the seed."""
        vid = Variant(self.program, files).id
        seed_files = self.files.get(self.seed_id, files) if parent_id or drafted else files
        record = self.store.add_variant(
            vid=vid, full_hash=variant_hash(files), parent_id=parent_id, files=files,
            diff=unified_diff(self.files[parent_id], files) if parent_id else "",
            seed_diff=unified_diff(seed_files, files), call=call, seeds=seeds)
        self.files[vid] = files
        for ev in record.evaluations:
            self.submit(ev)
        return vid

    def submit(self, ev: EvalRow) -> None:
        self.evals[ev.id] = ev
        if ev.folder.exists():  # what a killed or retried attempt left
            shutil.rmtree(ev.folder)
        variant = Variant(self.program, self.files[ev.variant_id])
        self.pool.submit(Job(ev.id, variant, ev.folder, ev.seed,
                             0 if ev.purpose == "recheck" else 1))
        self.outstanding += 1

    def _budget_spent(self) -> str | None:
        budget = self.cfg.budget
        if budget.variants is not None and len(self.files) - 1 >= budget.variants:
            return "variant budget"
        if not self._time_left():
            return "wall time"
        if self.rejections >= budget.max_rejections:
            return f"generator gave no new variant in {self.rejections} calls"
        return self._generator_budget_spent()

    def _note_call_errors(self, proposals: list[Proposal]) -> None:
        """Stop proposing after ``MAX_CALL_ERRORS`` generation calls in a row got no answer at
        all (a server gone or hanging costs a few deadlines, not ``max_rejections`` of them);
        the evaluations in flight finish and the reason names the last error."""
        for proposal in proposals:
            call = proposal.call
            if call is not None and call.error:
                self.call_errors += 1
                if self.call_errors >= MAX_CALL_ERRORS and self.stop_reason is None:
                    self.stop_reason = (f"generator failing: {self.call_errors} calls in a row "
                                        f"got no answer, last: {call.error[:200]}")
            else:
                self.call_errors = 0

    def _generator_budget_spent(self) -> str | None:
        """The generator's token or money budget (``generator.budget``), when one is set."""
        gen = self.cfg.generator
        if gen.budget.tokens is None and gen.budget.usd is None:
            return None
        totals = self.store.call_totals()
        used = totals["tokens_in"] + totals["tokens_out"]
        if gen.budget.tokens is not None and used >= gen.budget.tokens:
            return f"token budget ({used} of {gen.budget.tokens} tokens used)"
        if gen.budget.usd is not None and gen.price is not None:
            cost = gen.price.cost(totals["tokens_in"], totals["tokens_out"])
            if cost >= gen.budget.usd:
                return f"money budget (${cost:.4f} of ${gen.budget.usd:g} spent)"
        return None

    def _time_left(self) -> bool:
        limit = self.cfg.budget.wall_time_s
        if limit is None:
            return True
        expect = statistics.median(self.durations) if self.durations else 0.0
        return time.monotonic() - self.t0 + expect <= limit

    @property
    def seed_id(self) -> str:
        if self._seed_id is None:
            self._seed_id = self.store.variants()[0].id
        return self._seed_id

    @property
    def metric(self) -> str:
        return self.program.manifest.metric.name

    @property
    def noise(self) -> float | None:
        """The noise floor near the best so far: the program's declared one, or the one this
        run measures (``orchestrator.evolution.noise``); None before any variant ran twice."""
        best = self.population.best
        return self.floor.at(best.value if best is not None else None)


def _check_editable(proposal: Proposal, parent: dict[str, str], seen: set[str]) -> str | None:
    if proposal.files is None or set(proposal.files) != set(parent):
        return "a proposal must give every editable file and no other"
    return None
