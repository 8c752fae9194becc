"""The evolution commands of ``selfprog``: evolve, status, best, show, lineage, report, gc.

Each is a thin wrapper over a library function. Exit codes (``selfprog evolve``): 0 the run
finished its budget; 1 another selfprog error (e.g. no such run); 2 a config, manifest or slot
plan error (the key is named); 3 the Docker engine or an image failed; 130 interrupted (resume
with ``--resume RUN``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.tree import Tree

from orchestrator.cli.app import app, console, fail
from orchestrator.errors import SelfprogError

if TYPE_CHECKING:
    import docker

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where run folders are.")]
RunArg = Annotated[str, typer.Argument(help="Run id (a folder under --runs-dir) or path.")]


def _say(message: str) -> None:
    console.print(message, highlight=False)


@app.command()
def evolve(
    config: Annotated[Path | None, typer.Argument(help="TOML config; omitted: the embedded "
                                                  "defaults (programs/codelm, ~15 min).")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run (id or folder).")] = None,
    summary_md: Annotated[Path | None, typer.Option(help="Append a markdown summary here "
                                                    "(e.g. $GITHUB_STEP_SUMMARY).")] = None,
    program: Annotated[Path | None, typer.Option(help="Override: program directory.")] = None,
    variants: Annotated[int | None, typer.Option(help="Override: budget.variants.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Override: wall-time budget.")] = None,
    slots: Annotated[int | None, typer.Option(help="Override: slots.count.")] = None,
    generator: Annotated[str | None, typer.Option(help="Override: generator.backend.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Override: the run folder's name.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any key: "
                                                   "selection.k=3 (repeatable).")] = None,
    live: Annotated[bool, typer.Option(help="Live progress: a table on a terminal, a line per "
                                       "finished evaluation in a log.")] = True,
) -> None:
    """Evolve a program: generate, build, run and select variants until the budget is spent."""
    from orchestrator.cli.live import LineView, LiveView
    from orchestrator.evolution.config import parse_override
    from orchestrator.evolution.launch import run_evolution

    named = {"program": program, "budget.variants": variants, "slots.count": slots,
             "budget.wall_time_s": minutes * 60 if minutes is not None else None,
             "generator.backend": generator, "run_id": run_id}
    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in named.items()
                 if v is not None}
    view = (LiveView(console) if console.is_terminal else LineView(console)) if live else None

    def started(evo) -> None:
        _say(f"run {evo.store.run_id}: {evo.program.name}, {len(evo.pool.slots)} slot(s), "
             f"folder {evo.store.folder}")
        if view:
            view.start(evo)

    try:
        overrides.update(parse_override(s) for s in set_ or [])
        done = run_evolution(config, overrides, resume=resume, summary_md=summary_md,
                             on_start=started, on_tick=view.tick if view else None, log=_say)
    except SelfprogError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        _say("interrupted: resume with selfprog evolve --resume RUN")
        raise typer.Exit(130) from None
    finally:
        if view:
            view.stop()
    out, s = done.outcome, done.summary
    best = s["best"]
    _say(f"finished ({out.reason}): best {s['metric']} "
         f"{best['value'] if best else '—'} ({best['id'] if best else '—'}), seed "
         f"{s['seed']['value']}, slot use {out.utilisation:.0%}")
    _say(f"report: {done.report}\nbest diff: {done.folder / 'best.diff'}\n"
         f"summary: {done.folder / 'summary.json'}")


def _open(run: str, runs_dir: Path):
    from orchestrator.evolution.launch import find_run
    from orchestrator.program import Program
    from orchestrator.runs.store import Store

    store = Store(find_run(run, runs_dir))
    return store, Program.load(store.run_info()["program"])


@app.command()
def status(run: Annotated[str | None, typer.Argument(help="A run; omitted: list runs.")] = None,
           runs_dir: RunsDir = Path("runs")) -> None:
    """A run's counts and best, or every run in --runs-dir."""
    from orchestrator.runs.summary import summarize

    try:
        if run is None:
            for folder in sorted(runs_dir.glob("*/run.db")):
                store, program = _open(str(folder.parent), runs_dir)
                s = summarize(store, program)
                best = s["best"]["value"] if s["best"] else "—"
                _say(f"{s['run']}  {s['program']}  {s['state']}  {s['counts']['variants']} "
                     f"variants  best {s['metric']} {best}")
            return
        store, program = _open(run, runs_dir)
        print(json.dumps(summarize(store, program), indent=2))
    except SelfprogError as exc:
        raise fail(exc) from None


@app.command()
def best(run: RunArg, runs_dir: RunsDir = Path("runs"),
         diff: Annotated[bool, typer.Option(help="Print the patch against the seed.")] = False
         ) -> None:
    """The best variant of a run (id and metric), or its patch against the seed."""
    from orchestrator.runs.summary import best_variant

    try:
        store, program = _open(run, runs_dir)
        row = best_variant(store, program.manifest.metric.goal)
    except SelfprogError as exc:
        raise fail(exc) from None
    if row is None:
        _say("no variant has been admitted yet")
        raise typer.Exit(1)
    print(row.seed_diff if diff else f"{row.id} {program.manifest.metric.name}={row.value}")


@app.command()
def show(run: RunArg, variant: Annotated[str, typer.Argument(help="Variant id or prefix.")],
         runs_dir: RunsDir = Path("runs"),
         log_lines: Annotated[int, typer.Option(help="Lines of each log.")] = 20) -> None:
    """One variant: its source, diff, evaluations (metrics, status) and the ends of its logs."""
    try:
        store, _program = _open(run, runs_dir)
        row = store.variant(variant)
    except SelfprogError as exc:
        raise fail(exc) from None
    _say(f"[bold]variant {row.id}[/] #{row.idx} parent {row.parent_id or '—'} "
         f"verdict {row.verdict or '—'} value {row.value}")
    if row.folder.exists():
        for rel, text in row.files().items():
            _say(f"[bold]--- {rel}[/]")
            print(text)
    print(row.diff or "(the seed: no diff)")
    for ev in (e for e in store.evaluations() if e.variant_id == row.id):
        _say(f"[bold]evaluation seed {ev.seed}[/] ({ev.purpose}): {ev.state} {ev.status} "
             f"metric {ev.metric} {ev.duration_s or 0:.1f} s {ev.error or ''}")
        for log in sorted((row.folder / f"eval-{ev.seed}").glob("*.log")):
            _say(f"[dim]{log}[/]")
            print("".join(log.read_text(errors="replace").splitlines(True)[-log_lines:]))


@app.command()
def lineage(run: RunArg, runs_dir: RunsDir = Path("runs")) -> None:
    """The tree of parents and children, with each variant's value and verdict."""
    try:
        store, _program = _open(run, runs_dir)
    except SelfprogError as exc:
        raise fail(exc) from None
    nodes: dict[str, Tree] = {}
    root = Tree(f"run {store.run_id}")
    for v in store.variants():
        parent = nodes.get(v.parent_id, root) if v.parent_id else root
        value = f"{v.value:.5g}" if v.value is not None else "—"
        nodes[v.id] = parent.add(f"#{v.idx} {v.id} {value} {v.verdict or ''}")
    console.print(root)


@app.command()
def report(run: RunArg, runs_dir: RunsDir = Path("runs"),
           out: Annotated[Path | None, typer.Option(help="Where to write the HTML.")] = None
           ) -> None:
    """Write the run's static HTML report (curve, statuses, lineage, diffs) and say where."""
    from orchestrator.runs.report import write_report

    try:
        store, program = _open(run, runs_dir)
        print(write_report(store, program, out))
    except SelfprogError as exc:
        raise fail(exc) from None


@app.command()
def gc(run: RunArg, runs_dir: RunsDir = Path("runs"),
       keep: Annotated[list[str] | None, typer.Option(help="Variant ids to keep.")] = None
       ) -> None:
    """Remove the folders and images of variants that are neither best, seed nor kept."""
    from orchestrator.containers.engine import connect
    from orchestrator.runs.gc import collect

    try:
        store, program = _open(run, runs_dir)
        keep_all = tuple(keep or ()) + tuple(json.loads(store.run_info()["config"])["keep"])
        client = connect()
        done = collect(store, program, lambda tag: _remove_image(client, tag), keep_all)
    except SelfprogError as exc:
        raise fail(exc) from None
    _say(f"collected {len(done.variants)} variant(s), {len(done.images)} image(s), "
         f"{done.bytes_freed / 2**20:.1f} MiB of folders")


def _remove_image(client: docker.DockerClient, tag: str) -> bool:
    """Remove one image; False when it is gone already or a container (of another run) uses it.

    Raises:
        EngineError: the engine refused for another reason.
    """
    from docker.errors import APIError, ImageNotFound

    from orchestrator.errors import EngineError

    try:
        client.images.remove(tag, noprune=False)
    except ImageNotFound:
        return False
    except APIError as exc:
        if exc.status_code == 409:  # a container of another run uses it: leave it
            return False
        raise EngineError(f"cannot remove image {tag}: {exc}") from None
    return True
