"""Commands that read a run: status, best, show, lineage, report, gc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.tree import Tree

from orchestrator.cli.common import RunArg, RunsDir, out, say
from orchestrator.cli.common import runs_dir as _runs
from orchestrator.errors import SelfprogError, StoreError
from orchestrator.runs.snapshot import ProgramFacts, read_facts
from orchestrator.runs.store import Store, find_run

if TYPE_CHECKING:
    from orchestrator.program import Program


def open_run(run: str, folder: Path | None) -> tuple[Store, ProgramFacts]:
    """A run's store and its program's name and metric, read from the run folder alone (the
    copy made at start), so a run reads wherever its folder lies and wherever its program went.

    Raises:
        StoreError: no such run.
        ConfigError: its program's manifest does not read.
    """
    store = Store(find_run(run, _runs(folder)))
    return store, read_facts(store.program_root())


def open_run_whole(run: str, folder: Path | None) -> tuple[Store, Program]:
    """As :func:`open_run`, with the program's whole manifest (``report``, ``gc``)."""
    from orchestrator.runs.snapshot import read_program

    store = Store(find_run(run, _runs(folder)))
    return store, read_program(store.program_root())


def status(run: Annotated[str | None, typer.Argument(help="A run; omitted: list runs.")] = None,
           runs_dir: RunsDir = None) -> None:
    """A run's counts and best (JSON), or one line per run in --runs-dir (stdout)."""
    from orchestrator.runs.summary import summarize

    if run is None:
        where = _runs(runs_dir)
        found = where.glob("*/run.db")  # not .RUN.creating-PID: a run being made
        for folder in sorted(p for p in found if not p.parent.name.startswith(".")):
            try:
                store, program = open_run(str(folder.parent), where)
                s = summarize(store, program)
            except SelfprogError as exc:  # one unreadable run does not hide the others
                say(f"{folder.parent.name}: not readable: {exc}")
                continue
            best = s["best"]["value"] if s["best"] else "—"
            shared = "" if s.get("protected", True) else "  NOT PROTECTED (isolation = shared)"
            out.print(f"{s['run']}  {s['program']}  {s['state']}  {s['counts']['variants']} "
                      f"variants  best {s['metric']} {best}{shared}", markup=False)
        return
    store, program = open_run(run, runs_dir)
    print(json.dumps(summarize(store, program), indent=2))


def best(run: RunArg, runs_dir: RunsDir = None,
         diff: Annotated[bool, typer.Option(help="Print the patch against the seed.")] = False
         ) -> None:
    """The best variant of a run (id and metric), or its patch against the seed."""
    from orchestrator.runs.summary import best_variant

    store, program = open_run(run, runs_dir)
    row = best_variant(store, program.manifest.metric.goal)
    if row is None:
        say("no variant has been admitted yet")
        raise typer.Exit(1)
    if diff and row.idx == 0:
        say("no variant beat the seed: there is no diff")
        return
    print(row.seed_diff if diff else f"{row.id} {program.manifest.metric.name}={row.value}")


def show(run: RunArg, variant: Annotated[str, typer.Argument(
             help="Variant id or prefix, #N (its index, as lineage prints it), or call:N for "
             "generation call N.")],
         runs_dir: RunsDir = None,
         log_lines: Annotated[int, typer.Option(help="Lines of each log.")] = 20,
         call: Annotated[bool, typer.Option(help="Also print the generation call that wrote the "
                                                 "variant, whole (prompt and raw answer).")] = False
         ) -> None:
    """One variant: its source, diff, evaluations (metrics, status) and the ends of its logs;
    or one generation call whole (``call:N``: prompt, raw answer, finish reason, tokens)."""
    store, _program = open_run(run, runs_dir)
    if variant.startswith("call:"):
        number = variant.removeprefix("call:")
        if not number.isdigit():
            raise StoreError(f"{variant!r}: a call is named call:N with N a number "
                             "(see the ids in summary.json or the store)")
        print_call(store.call(int(number)))
        return
    row = store.variant_by_index(int(variant[1:])) if _is_index(variant) else \
        store.variant(variant)
    say(f"[bold]variant {row.id}[/] #{row.idx} parent {row.parent_id or '—'} "
        f"verdict {row.verdict or '—'} value {row.value}")
    if row.folder.exists():
        for rel, text in row.files().items():
            say(f"[bold]--- {rel}[/]")
            print(text)
    print(row.diff or "(the seed: no diff)")
    for ev in store.evaluations(variant_id=row.id):
        say(f"[bold]evaluation seed {ev.seed}[/] ({ev.purpose}): {ev.state} {ev.status} "
            f"metric {ev.metric} {ev.duration_s or 0:.1f} s {ev.error or ''}")
        for log in sorted((row.folder / f"eval-{ev.seed}").glob("*.log")):
            say(f"[dim]{log}[/]")
            print("".join(log.read_text(errors="replace").splitlines(True)[-log_lines:]))
    if call:
        made = [c for c in store.calls() if c["variant_id"] == row.id and c["outcome"] == "variant"]
        if not made:
            say("(no generation call wrote this variant: the seed, or a draft)")
        for c in made:
            print_call(store.call(c["id"]))


def print_call(call: dict) -> None:
    """A generation call whole: what was asked, what came back, and why it ended."""
    say(f"[bold]generation call {call.get('id', '')}[/] {call.get('backend')} "
        f"{call.get('model') or ''} kind {call.get('kind') or '-'} outcome "
        f"{call.get('outcome', '-')} finish {call.get('finish_reason') or '-'} tokens "
        f"{call.get('tokens_in')} in, {call.get('tokens_out')} out "
        f"({call.get('tokens_reasoning')} reasoning), {call.get('latency_s') or 0:.1f} s")
    if call.get("rejection"):
        say(f"rejected: {call['rejection']}")
    if call.get("error"):
        say(f"[red]error:[/] {call['error']}")
    say("[bold]--- prompt[/]")
    print(call.get("prompt") or "")
    say("[bold]--- response[/]")
    print(call.get("response") or "")


def lineage(run: RunArg, runs_dir: RunsDir = None) -> None:
    """The tree of parents and children, with each variant's value and verdict."""
    store, _program = open_run(run, runs_dir)
    nodes: dict[str, Tree] = {}
    root = Tree(f"run {store.run_id}")
    for v in store.variants():
        parent = nodes.get(v.parent_id, root) if v.parent_id else root
        value = f"{v.value:.5g}" if v.value is not None else "—"
        nodes[v.id] = parent.add(f"#{v.idx} {v.id} {value} {v.verdict or ''}")
    out.print(root)


def report(run: RunArg, runs_dir: RunsDir = None,
           out: Annotated[Path | None, typer.Option(help="Where to write the HTML.")] = None
           ) -> None:
    """Write the run's static HTML report (curve, statuses, lineage, diffs) and say where."""
    from orchestrator.runs.report import write_report

    store, program = open_run_whole(run, runs_dir)
    print(write_report(store, program, out))


def gc(run: RunArg, runs_dir: RunsDir = None,
       keep: Annotated[list[str] | None, typer.Option(help="Variant ids to keep.")] = None
       ) -> None:
    """Remove the folders and images of variants that are neither best, seed nor kept."""
    from orchestrator.containers.backend import LocalBackend
    from orchestrator.runs.gc import collect
    from orchestrator.runs.lock import RunLock

    store, program = open_run_whole(run, runs_dir)
    lock = RunLock(store.folder)  # never collect under a live driver
    keep_all = tuple(keep or ()) + tuple(json.loads(store.run_info()["config"])["keep"])
    backend = LocalBackend.connect()
    try:
        done = collect(store, program, backend.remove_image, keep_all)
    finally:
        backend.close()
        lock.release()
    say(f"collected {len(done.variants)} variant(s), {len(done.images)} image(s), "
        f"{done.bytes_freed / 2**20:.1f} MiB of folders")


def _is_index(text: str) -> bool:
    """``#12``: a variant's index, as ``lineage`` and the report print it."""
    return text.startswith("#") and text[1:].isdigit()
