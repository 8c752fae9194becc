"""``self``: the program's own exported code LM writes its next version (the paper's loop).

A byte-level model cannot follow instructions but can complete code, so each proposal is one of
two kinds of completion, built so that invalid output cannot come out rather than rejected:

* a *setting hole* (``kind = "hole"``): one declared ``# search:`` setting (the space ``mutate``
  draws from, :mod:`.searchspace`) is blanked, and the model fills it. The candidates are the
  declared choices, or a grid over the declared range (log-spaced for ``log``); each is scored by
  the model's log-probability of ``<literal><rest of the line>`` after the source before it, and
  one is drawn with probability ``softmax(logp / temperature)`` (greedy at temperature 0). Every
  candidate is a literal in range, so the variant parses and runs as far as the declaration goes.
* a *code completion* (``kind = "completion"``): a *region* is the body of a top-level ``def``,
  ``class`` or compound statement of an editable Python file. A line inside it is picked (seeded),
  the model continues the source up to that line under the ``python-block`` constraint (the
  sampler keeps only lines after which the block can still parse), and the sample replaces the
  rest of the region; its longest prefix of whole lines under which the file parses is kept.
  ``codelm.candidates`` samples are drawn; those that pass validation (the undefined-names check
  included) are ranked by the model's mean log-probability per byte of the new region, and the
  most likely one is proposed. So the self's own likelihood decides what its next version is.

Both kinds go through one ``complete_many`` and one ``score_many`` call per batch (one container
each, when sandboxed). Each call is recorded with its ``kind`` and ``generator``: the id of the
variant whose model wrote it ('' for the model the run started with).

This module never loads a model: the factory (``generators.auto``) hands it a
:class:`~orchestrator.completer.Completer` and the loader for the next one, so neither Docker nor
torch is imported here, and the generator is tested with a fake completer.
"""

from __future__ import annotations

import ast
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.completer import Completer, CompletionRequest, ScoreRequest
from orchestrator.errors import SelfprogError
from orchestrator.generators.base import (
    GenerationCall,
    GenerationRequest,
    Parent,
    Proposal,
    Reason,
    Rejected,
    starts,
)
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.edits.validate import accept, rejected
from orchestrator.generators.exprholes import Site, same, sites
from orchestrator.generators.searchspace import (
    Setting,
    find_settings,
    for_device,
    render,
    substitute,
)
from orchestrator.program import variant_hash

_STOP = "\n\n\n"
"""Two blank lines: where PEP 8 code ends a top-level block."""


def regions(text: str) -> list[tuple[int, int]]:
    """``(first, end)`` 0-based line ranges of the bodies of top-level compound statements:
    the lines a sample may rewrite (``end`` exclusive)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    spans = []
    for node in tree.body:
        body = getattr(node, "body", None)
        if not body or not isinstance(body, list) or node.end_lineno is None:
            continue
        first = body[0].lineno - 1
        if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                        ast.Constant) and len(body) > 1:
            first = body[1].lineno - 1  # keep the docstring: it tells the model what to write
        if node.end_lineno - first >= 2:
            spans.append((first, node.end_lineno))
    return spans


def splice(text: str, cut: int, end: int, sample: str, finished: bool) -> str:
    """The file with lines ``cut..end`` replaced by the sample's part that belongs to the block.

    The sample ends at the first line that is back at the top level; when it ran out of bytes
    (``finished`` False) its last, partial line is dropped. Of the lines left, the longest first
    part under which the file parses is kept (a sample cut inside an open bracket or a header
    without its body loses that tail instead of the whole proposal).

    Raises:
        Rejected: ``no_edit``: not one line of the sample belongs to the block; ``syntax``: no
            first part of it gives a file that parses.
    """
    lines = text.split("\n")
    kept = []
    sample_lines = sample.split("\n")
    if not finished:
        sample_lines = sample_lines[:-1]
    for line in sample_lines:
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept:
        raise Rejected(Reason.NO_EDIT, "the sample holds no complete line of the block")
    first_error = None
    for n in range(len(kept), 0, -1):
        if not kept[n - 1].strip():
            continue
        new = "\n".join(lines[:cut] + kept[:n] + lines[end:])
        try:
            ast.parse(new)
        except (SyntaxError, ValueError) as exc:
            first_error = first_error or exc
            continue
        return new
    where = f"line {getattr(first_error, 'lineno', '?')}: {getattr(first_error, 'msg', '')}"
    raise Rejected(Reason.SYNTAX, f"no first part of the sample parses ({where})")


def statement_start(text: str, first: int) -> int:
    """The 0-based line where the top-level statement whose body starts at line ``first``
    begins (its first decorator, if any); ``first`` when none is found."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return first
    for node in tree.body:
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and body[0].lineno - 1 <= first <= \
                (node.end_lineno or 0):
            decorators = getattr(node, "decorator_list", [])
            return min([node.lineno - 1, *(d.lineno - 1 for d in decorators)])
    return first


def hole_values(setting: Setting, grid: int) -> list[object]:
    """The candidate values of a setting hole, its current value left out: the declared
    choices, every integer of a small ``int`` range (else ``grid`` spread over it), ``grid``
    log-spaced values (two significant digits) of a ``log`` range, ``grid`` evenly spaced ones
    of a ``float`` range. Empty for an undeclared (``generic``) setting."""
    if setting.kind == "choice":
        values: list[object] = list(setting.args)
    elif setting.kind == "int":
        low, high = math.ceil(setting.args[0]), math.floor(setting.args[1])
        if high - low + 1 <= grid:
            values = list(range(low, high + 1))
        else:
            values = sorted({round(low + (high - low) * i / (grid - 1)) for i in range(grid)})
    elif setting.kind == "log":
        low, high = (math.log(x) for x in setting.args)
        values = [float(f"{math.exp(low + (high - low) * i / (grid - 1)):.2g}")
                  for i in range(grid)]
    elif setting.kind == "float":
        low, high = setting.args
        step = (high - low) / (grid - 1)
        digits = max(0, 2 - math.floor(math.log10(step))) if step > 0 else 3
        values = [round(low + step * i, digits) for i in range(grid)]
    else:
        return []
    out: list[object] = []
    for v in values:
        if v != setting.value and v not in out:
            out.append(v)
    return out


_VARIANT_DIR = re.compile(r"^\d+-(\w+)$")


def variant_of(folder: Path) -> str:
    """The id of the variant whose artifacts ``folder`` is (a run keeps them under
    ``variants/<index>-<id>/``), or '' for a folder outside a run."""
    for part in reversed(folder.parts[:-1]):
        match = _VARIANT_DIR.match(part)
        if match and "variants" in folder.parts:
            return match.group(1)
    return ""
class SelfGenerator:
    """Samples edits from an exported codelm: setting holes and code completions."""

    name = "self"

    def __init__(self, config: GeneratorConfig, lm: Completer,
                 load: Callable[[Path], Completer]):
        """
        Args:
            config: the generator's configuration (``codelm`` sets budgets, the mix of edit
                kinds and the candidates per proposal).
            lm: the completer of the model to sample now.
            load: makes the completer of another exported model (see :meth:`use`).
        """
        self.config = config
        self.codelm: CodeLMConfig = config.codelm
        self.model_name = self.codelm.model or "(given)"
        self.generator_id = ""
        """The variant whose model writes now; '' for the model the run started with."""
        self.lm = lm
        self.load = load

    def use(self, folder: str | Path) -> None:
        """Switch to another exported model, e.g. the new best variant's artifacts.

        Raises:
            ConfigError: the folder holds no usable model (the current one is kept).
        """
        self.lm = self.load(Path(folder))
        self.model_name = str(folder)
        self.generator_id = variant_of(Path(folder))

    def propose(self, request: GenerationRequest) -> list[Proposal]:
        editable = request.program.manifest.program.editable
        seed_files = request.program.source_files()
        seen = set(request.seen)
        taken: dict[tuple[str, str, str], int] = {}  # holes planned per (parent, setting)
        gpus = request.facts.gpus if request.facts is not None else None
        plans = [self._plan(parent, rng, request.seed * 100_003 + index, seen, taken, gpus)
                 for index, parent, rng in starts(request, seed_files, salt="self:")]
        blocks = [p for p in plans if isinstance(p, _Block)]
        holes = [p for p in plans if isinstance(p, _Hole)]
        self._sample(blocks)
        self._score(holes, blocks, seed_files, editable, seen)
        out = []
        for plan in plans:
            if isinstance(plan, _Hole):
                plan = self._finish_hole(plan, seed_files, editable, seen)
            elif isinstance(plan, _Block):
                plan = self._finish_block(plan, seen)
            if plan.valid and plan.files is not None:
                seen.add(variant_hash(plan.files))
            out.append(plan)
        return out

    # --- planning ---------------------------------------------------------------------------

    def _plan(self, parent: Parent, rng: random.Random, seed: int, seen: set[str],
              taken: dict[tuple[str, str, str], int],
              gpus: int | None = None) -> _Hole | _Block | Proposal:
        key = variant_hash(parent.files)
        # a setting with as many holes planned in this batch as it has fresh values is full
        holes = [h for h in self._holes(parent, seen, gpus)
                 if len(h[1]) > taken.get((key, h[0].path, h[0].name), 0)]
        blocks: list[tuple[str, tuple[int, int]] | tuple[str, Site]]
        if self.codelm.completion == "expression":
            blocks = [(path, site) for path in sorted(parent.files) if path.endswith(".py")
                      for site in sites(parent.files[path])]
        else:
            blocks = [(path, span) for path in sorted(parent.files) if path.endswith(".py")
                      for span in regions(parent.files[path])]
        want_hole = rng.random() < self.codelm.hole_fraction
        if holes and (want_hole or not blocks):
            hole = rng.choice(holes)
            slot = (key, hole[0].path, hole[0].name)
            taken[slot] = taken.get(slot, 0) + 1
            return self._plan_hole(parent, hole, rng)
        if not blocks:
            why = "no editable region" if not find_settings_any(parent) else \
                "every value of every declared setting was tried"
            return rejected(parent.variant_id or None, None, Rejected(Reason.NO_EDIT, why))
        path, where = rng.choice(blocks)
        lines = parent.files[path].split("\n")
        if isinstance(where, Site):
            prompt = self._fit("\n".join(lines[: where.line] + [lines[where.line][: where.start]]))
            budget = min(self.codelm.max_new_bytes, 2 * len(where.text) + 24)
            return _Block(parent, path, where.line, where.line + 1, prompt, budget, seed, where)
        first, end = where
        cut = rng.randrange(first, end)
        prefix = "\n".join(lines[:cut]) + "\n"
        region_bytes = len("\n".join(lines[cut:end]).encode())
        budget = min(self.codelm.max_new_bytes, max(64, 2 * region_bytes + 64))
        prompt = self._fit(prefix)
        head = statement_start(parent.files[path], first)
        if len(prompt) < len(prefix) and head < cut:
            # the python-block check needs the statement's first line: keep it in the prompt
            # (the model itself only sees its last ``context`` bytes anyway)
            block = "\n".join(lines[head:cut]) + "\n"
            prompt = block if len(block) > len(prompt) else prompt
        return _Block(parent, path, cut, end, prompt, budget, seed)

    def _holes(self, parent: Parent, seen: set[str],
               gpus: int | None = None) -> list[tuple[Setting, list[object]]]:
        """The parent's declared settings that have an untried value, with those values (on a
        run without GPUs, not the settings declared ``gpu``)."""
        settings = for_device([s for path in sorted(parent.files) if path.endswith(".py")
                               for s in find_settings(path, parent.files[path])], gpus)
        out = []
        for setting in settings:
            values = [v for v in hole_values(setting, self.codelm.hole_grid)
                      if variant_hash(self._with(parent, setting, v)) not in seen]
            if values:
                out.append((setting, values))
        return out

    @staticmethod
    def _with(parent: Parent, setting: Setting, value: object) -> dict[str, str]:
        files = dict(parent.files)
        files[setting.path] = substitute(files[setting.path],
                                         [(setting, render(setting, value))])  # type: ignore[arg-type]
        return files

    def _plan_hole(self, parent: Parent, hole: tuple[Setting, list[object]],
                   rng: random.Random) -> _Hole:
        setting, values = hole
        lines = parent.files[setting.path].split("\n")
        line = lines[setting.line]
        prompt = self._fit("\n".join(lines[: setting.line] + [line[: setting.start]]))
        rest = line[setting.end :] + "\n"
        literals = tuple(render(setting, v) for v in values)  # type: ignore[arg-type]
        return _Hole(parent, setting, values, literals, prompt,
                     tuple(lit + rest for lit in literals), rng.random())

    def _fit(self, prefix: str) -> str:
        return prefix.encode()[-self.codelm.context_bytes:].decode(errors="ignore")

    # --- the model --------------------------------------------------------------------------

    def _sample(self, plans: list[_Block]) -> None:
        """Every block's ``candidates`` samples: one ``complete_many`` call (one container, when
        sandboxed) for the whole batch. An error of the batch as a whole is every sample's."""
        if not plans:
            return
        k = self.codelm.candidates
        requests = [CompletionRequest(p.prompt, p.budget, self.config.temperature,
                                      p.seed * 131 + i, None,
                                      "python-expr" if p.site else "python-block",
                                      p.site.names if p.site else ())
                    for p in plans for i in range(k)]
        started = time.monotonic()
        texts: list[str | Exception]
        try:
            texts = list(self.lm.complete_many(requests))
        except SelfprogError as exc:  # CodeLMError: the engine, the deadline, a crash
            texts = [exc] * len(requests)
        took = time.monotonic() - started
        for n, plan in enumerate(plans):
            plan.samples = texts[n * k : (n + 1) * k]
            plan.latency_s = took / max(1, len(plans))

    def _score(self, holes: list[_Hole], blocks: list[_Block], seed_files: dict[str, str],
               editable: tuple[str, ...], seen: set[str]) -> None:
        """Build and validate each block's candidates, then score what needs the model's
        likelihood (every hole; blocks with more than one valid candidate) in one
        ``score_many`` call."""
        asks: list[tuple[_Hole | _Block, ScoreRequest]] = []
        for hole in holes:
            asks.append((hole, ScoreRequest(hole.prompt, hole.continuations)))
        for block in blocks:
            self._candidates(block, seed_files, editable, seen)
            if len(block.valid) > 1:
                conts = tuple(c.region for c in block.valid)
                asks.append((block, ScoreRequest(block.prompt, conts)))
        if not asks:
            return
        started = time.monotonic()
        results: list[list[float] | Exception]
        try:
            results = list(self.lm.score_many([r for _plan, r in asks]))
        except SelfprogError as exc:
            results = [exc] * len(asks)
        took = time.monotonic() - started
        for (plan, req), res in zip(asks, results, strict=True):
            plan.latency_s += took / len(asks)
            if isinstance(res, Exception) or len(res) != len(req.continuations) \
                    or any(math.isnan(v) for v in res):
                plan.score_error = (f"{type(res).__name__}: {res}" if isinstance(res, Exception)
                                    else f"CodeLMError: {len(res)} scores for "
                                    f"{len(req.continuations)} continuations")
                continue
            plan.logprobs = list(res)

    def _candidates(self, block: _Block, seed_files: dict[str, str], editable: tuple[str, ...],
                    seen: set[str]) -> None:
        parent, path = block.parent, block.path
        tried: set[str] = set()
        for sample in block.samples:
            if isinstance(sample, Exception):
                block.errors.append(f"{type(sample).__name__}: {sample}")
                continue
            files = dict(parent.files)
            try:
                if block.site is not None:
                    files[path] = _fill(parent.files[path], block.site, sample)
                else:
                    files[path] = splice(parent.files[path], block.cut, block.end, sample,
                                         len(sample.encode()) < block.budget)
                key = variant_hash(files)
                if key in tried:
                    continue
                tried.add(key)
                diffs = accept(files, parent.files, seed_files, editable, seen,
                               self.config.validation)
            except Rejected as exc:
                block.rejections.append(exc)
                continue
            old = parent.files[path].split("\n")
            new = files[path].split("\n")
            tail = len(old) - block.end
            region = "\n".join(new[block.cut : len(new) - tail]) + "\n"
            if block.site is not None:  # the prompt ends where the value starts
                region = new[block.cut][block.site.start :] + "\n"
            block.valid.append(_Candidate(sample, files, diffs, region))

    # --- proposals --------------------------------------------------------------------------

    def _call(self, kind: str, prompt: str, response: str, latency: float) -> GenerationCall:
        call = GenerationCall(self.name, self.model_name, prompt, response, kind=kind,
                              generator=self.generator_id)
        call.tokens_in, call.tokens_out = len(prompt.encode()), len(response.encode())
        call.latency_s = latency
        return call

    def _finish_hole(self, hole: _Hole, seed_files: dict[str, str], editable: tuple[str, ...],
                     seen: set[str]) -> Proposal:
        parent_id = hole.parent.variant_id or None
        call = self._call("hole", hole.prompt, "", hole.latency_s)
        if hole.logprobs is None:
            call.error = hole.score_error or "CodeLMError: no scores"
            return rejected(parent_id, call, Rejected(Reason.GENERATION_ERROR, call.error))
        # candidates an earlier proposal of this batch already made are out of the draw
        fresh = [i for i, v in enumerate(hole.values)
                 if variant_hash(self._with(hole.parent, hole.setting, v)) not in seen]
        if not fresh:
            return rejected(parent_id, call, Rejected(
                Reason.NO_EDIT, f"every candidate of {hole.setting.name} was proposed already"))
        pick = fresh[_draw([hole.logprobs[i] for i in fresh], self.config.temperature,
                           hole.draw)]
        call.response = hole.literals[pick]
        call.tokens_out = len(call.response.encode())
        files = self._with(hole.parent, hole.setting, hole.values[pick])
        try:
            diff_parent, diff_seed = accept(files, hole.parent.files, seed_files, editable, seen,
                                            self.config.validation)
        except Rejected as exc:
            return rejected(parent_id, call, exc)
        s = hole.setting
        note = (f"{s.path}: {s.name} = {call.response} (was {s.source}; logp "
                f"{hole.logprobs[pick]:.2f} among {len(hole.values)} candidates)")
        return Proposal(parent_id, files, call, diff_parent=diff_parent, diff_seed=diff_seed,
                        notes=[note])

    def _finish_block(self, block: _Block, seen: set[str]) -> Proposal:
        parent_id = block.parent.variant_id or None
        fresh = [c for c in block.valid if variant_hash(c.files) not in seen]
        if block.valid and not fresh:  # an earlier proposal of this batch made each of them
            block.rejections.insert(0, Rejected(Reason.DUPLICATE, "every valid sample was "
                                                "proposed already in this batch"))
        call = self._call("completion", block.prompt, "", block.latency_s)
        texts = [t for t in block.samples if isinstance(t, str)]
        call.response = texts[0] if texts else ""
        call.tokens_out = sum(len(t.encode()) for t in texts)
        if not block.valid:
            if not texts:
                call.error = block.errors[0] if block.errors else "CodeLMError: no sample"
                return rejected(parent_id, call, Rejected(Reason.GENERATION_ERROR, call.error))
            return rejected(parent_id, call, block.rejections[0])
        if not fresh:
            return rejected(parent_id, call, block.rejections[0])
        best, how = fresh[0], "1 valid sample"
        if len(block.valid) > 1 and block.logprobs is not None:
            per_byte = {id(c): lp / max(1, len(c.region.encode()))
                        for lp, c in zip(block.logprobs, block.valid, strict=True)}
            best = max(fresh, key=lambda c: per_byte[id(c)])
            how = (f"the likeliest of {len(block.valid)} valid samples "
                   f"({per_byte[id(best)]:.3f} nats/byte)")
        elif len(block.valid) > 1:
            how = f"the first of {len(block.valid)} valid samples (scoring failed: " \
                  f"{block.score_error})"
        call.response = best.sample
        note = f"{block.path}: lines {block.cut + 1}-{block.end} resampled; {how}"
        if block.site is not None:
            note = (f"{block.path}:{block.cut + 1}: {block.site.text} -> {best.sample.strip()}; "
                    f"{how}")
        return Proposal(parent_id, best.files, call, diff_parent=best.diffs[0],
                        diff_seed=best.diffs[1], notes=[note])


def _fill(text: str, site: Site, sample: str) -> str:
    """The file with the site's value replaced by the sample.

    Raises:
        Rejected: ``no_edit``: the sample is empty (no whole expression within its budget) or
            the same expression as before; ``syntax``: the file does not parse (the grammar
            should make this impossible; it is checked all the same).
    """
    value = sample.strip()
    if not value:
        raise Rejected(Reason.NO_EDIT, "the model wrote no whole expression within its budget")
    if same(value, site.text):
        raise Rejected(Reason.NO_EDIT, f"the model wrote the value back: {value}")
    lines = text.split("\n")
    line = lines[site.line]
    lines[site.line] = line[: site.start] + value + line[site.end :]
    new = "\n".join(lines)
    try:
        ast.parse(new)
    except (SyntaxError, ValueError) as exc:
        raise Rejected(Reason.SYNTAX, f"line {site.line + 1}: {exc}") from None
    return new


def find_settings_any(parent: Parent) -> bool:
    return any(find_settings(p, t) for p, t in parent.files.items() if p.endswith(".py"))


def _draw(logprobs: list[float], temperature: float, u: float) -> int:
    """Index drawn with probability ``softmax(logprobs / temperature)`` by the uniform ``u``;
    the likeliest at temperature 0."""
    finite = [lp if math.isfinite(lp) else -1e30 for lp in logprobs]
    if temperature == 0:
        return max(range(len(finite)), key=lambda i: finite[i])
    top = max(finite)
    weights = [math.exp((lp - top) / temperature) for lp in finite]
    target, acc = u * sum(weights), 0.0
    for i, w in enumerate(weights):
        acc += w
        if target < acc:
            return i
    return len(weights) - 1


@dataclass
class _Hole:
    """A setting to fill: the candidate values, their literals and the scoring request."""

    parent: Parent
    setting: Setting
    values: list[object]
    literals: tuple[str, ...]
    prompt: str
    continuations: tuple[str, ...]
    draw: float
    logprobs: list[float] | None = None
    score_error: str | None = None
    latency_s: float = 0.0


@dataclass
class _Candidate:
    sample: str
    files: dict[str, str]
    diffs: tuple[str, str]
    region: str
    """The new lines from the cut to the region's end: what the model's likelihood is of."""


@dataclass
class _Block:
    """Where one completion cuts its parent, its prompt and byte budget, and what came back."""

    parent: Parent
    path: str
    cut: int
    end: int
    prompt: str
    budget: int
    seed: int
    site: Site | None = None
    """Set for an expression hole: the value rewritten (``cut`` is its line)."""
    samples: list[str | Exception] = field(default_factory=list)
    valid: list[_Candidate] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    logprobs: list[float] | None = None
    score_error: str | None = None
    latency_s: float = 0.0
