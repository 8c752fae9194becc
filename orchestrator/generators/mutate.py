"""``mutate``: the random-search baseline. No language model; seeded, structured changes.

Each proposal changes one to ``max_changes`` declared settings of the parent (fewer changes more
likely), rewriting only the literals' source spans. The same seed, parent and ``seen`` set give
the same proposals. With no parent it starts from the program's shipped editable files (a task's
skeleton).

A peer program (OpenEvolve, ShinkaEvolve: ``regions = "evolve-block"``) declares no settings; there
``mutate`` changes numeric literals inside the EVOLVE-BLOCK regions instead (an int by a step, a
float by a factor), and its summary says so. Bytes outside the regions never change.
"""

from __future__ import annotations

import random
import time

from orchestrator.generators.base import (
    GenerationCall,
    GenerationRequest,
    Proposal,
    Reason,
    Rejected,
    starts,
)
from orchestrator.generators.config import MutateConfig, ValidationConfig
from orchestrator.generators.edits.validate import accept, rejected
from orchestrator.generators.searchspace import (
    Setting,
    draw,
    find_settings,
    for_device,
    render,
    substitute,
)
from orchestrator.peers import regions
from orchestrator.program import Program, variant_hash


class MutateGenerator:
    """Seeded mutations of the declared search space."""

    name = "mutate"

    def __init__(self, config: MutateConfig = MutateConfig(),
                 limits: ValidationConfig = ValidationConfig()):
        self.config = config
        self.limits = limits

    def cannot_propose(self, program: Program) -> str | None:
        """Why this generator can never propose anything for ``program`` (none of its editable
        Python files declares a search setting), or None. Mutations keep the declarations, so
        what the shipped files lack no variant will have: the run stops before it starts."""
        files = program.source_files()
        if program.manifest.program.regions == "evolve-block":  # a peer's: literals in regions
            if any(regions.numeric_literals(text) for text in files.values()):
                return None
            return (f"mutate changes numeric literals inside the EVOLVE-BLOCK regions, and the "
                    f"regions of program {program.name} ({', '.join(sorted(files))}) hold none: "
                    "use a model backend (--generator hf or openai)")
        if any(find_settings(path, text, undeclared=self.config.undeclared)
               for path, text in sorted(files.items()) if path.endswith(".py")):
            return None
        return (f"mutate changes only declared settings, and no editable file of program "
                f"{program.name} ({', '.join(sorted(files))}) declares one: add a search range "
                "to a setting, e.g. `LR = 0.1  # search: float[0.001, 1]`, or use a model "
                "backend (--generator hf or openai)")

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        editable = request.program.manifest.program.editable
        seed_files = request.program.source_files()
        seen = set(request.seen)
        out = []
        for _index, parent, rng in starts(request, seed_files):
            parent_id = parent.variant_id or None
            started = time.monotonic()
            try:
                avoid = seen | {variant_hash(parent.files)}
                if request.program.manifest.program.regions == "evolve-block":
                    files, summary = self._mutate_regions(parent.files, editable, rng, avoid)
                else:
                    gpus = request.facts.gpus if request.facts is not None else None
                    files, summary = self._mutate(parent.files, rng, avoid, gpus)
                diff_parent, diff_seed = accept(files, parent.files, seed_files, editable, seen,
                                                self.limits)
            except Rejected as exc:
                call = GenerationCall(self.name, "", "", "", latency_s=time.monotonic() - started)
                out.append(rejected(parent_id, call, exc))
                continue
            seen.add(variant_hash(files))
            call = GenerationCall(self.name, "", "", summary,
                                  latency_s=time.monotonic() - started)
            out.append(Proposal(parent_id, files, call, diff_parent=diff_parent,
                                diff_seed=diff_seed))
        return out

    def _mutate(self, files: dict[str, str], rng: random.Random, seen: set[str],
                gpus: int | None = None) -> tuple[dict[str, str], str]:
        """One unseen mutation of ``files`` and a one-line summary of what changed; with
        ``gpus`` = 0 (a run without GPUs) settings declared ``gpu`` are left alone.

        Raises:
            Rejected: nothing to change, or no unseen variant within ``attempts`` draws.
        """
        settings = for_device([
            s
            for path, text in sorted(files.items())
            if path.endswith(".py")
            for s in find_settings(path, text, undeclared=self.config.undeclared)
        ], gpus)
        if not settings:
            raise Rejected(Reason.EXHAUSTED, "no setting declares a search range "
                           "(`NAME = value  # search: int[lo, hi]`)")
        for _ in range(self.config.attempts):
            count = 1
            while count < min(self.config.max_changes, len(settings)) and rng.random() < 0.5:
                count += 1
            chosen = rng.sample(settings, count)
            changes = [(s, draw(s, rng)) for s in chosen]
            changes = [(s, v) for s, v in changes if v != s.value]
            if not changes:
                continue
            new = dict(files)
            for path in {s.path for s, _ in changes}:
                edits = [(s, render(s, v)) for s, v in changes if s.path == path]
                new[path] = substitute(files[path], edits)
            if variant_hash(new) not in seen:
                return new, "; ".join(_describe(s, v) for s, v in changes)
        raise Rejected(Reason.EXHAUSTED,
                       f"no unseen variant in {self.config.attempts} draws")


    def _mutate_regions(self, files: dict[str, str], editable: tuple[str, ...],
                        rng: random.Random, seen: set[str]) -> tuple[dict[str, str], str]:
        """One unseen variant with numeric literals inside the EVOLVE-BLOCK regions changed.

        Raises:
            Rejected: no numeric literal inside a region, or no unseen variant.
        """
        found = [(path, lit) for path in sorted(files) if path in editable
                 for lit in regions.numeric_literals(files[path])]
        if not found:
            raise Rejected(Reason.EXHAUSTED, "no numeric literal inside an EVOLVE-BLOCK region")
        for _ in range(self.config.attempts):
            count = 1
            while count < min(self.config.max_changes, len(found)) and rng.random() < 0.5:
                count += 1
            chosen = sorted(rng.sample(found, count), key=lambda c: (c[0], -c[1].start))
            new, notes = dict(files), []
            for path, lit in chosen:
                value = regions.mutate_number(lit.text, rng)
                if value == lit.text:
                    continue
                new[path] = new[path][:lit.start] + value + new[path][lit.end:]
                notes.append(f"{path}:{lit.line} {lit.text} -> {value}")
            if notes and variant_hash(new) not in seen:
                return new, ("mutated numeric literals inside EVOLVE-BLOCK regions: "
                             + "; ".join(reversed(notes)))
        raise Rejected(Reason.EXHAUSTED, f"no unseen variant in {self.config.attempts} draws")


def _describe(setting: Setting, value: object) -> str:
    return f"{setting.name}: {setting.value!r} -> {value!r}"
