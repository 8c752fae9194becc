"""Commands about this machine and single runs: doctor, engine, images, run, protocol schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import say

if TYPE_CHECKING:
    from orchestrator.result import VariantResult


def doctor() -> None:
    """Check the engine, GPU runtime, images and disk; each line says yes or no, and the fix."""
    from orchestrator.containers.doctor import run_checks

    checks = run_checks()
    for check in checks:
        mark = "[green]yes[/]" if check.ok else "[red]no [/]"
        fix = f"  → {check.fix}" if check.fix else ""
        say(f"{mark} {check.name}: {check.detail}{fix}")
    raise typer.Exit(0 if all(c.ok for c in checks) else 1)


def engine() -> None:
    """Make sure a Docker engine answers: install and start one if we are root on Debian."""
    from orchestrator.containers.engine import ensure_engine

    client = ensure_engine()
    say(f"Docker engine {client.version().get('Version')} answers.")


def images(
    gpu: Annotated[
        bool | None,
        typer.Option(help="Also build the GPU flavour (default: when the host has NVIDIA GPUs)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Base image (default: $BASE_IMAGE or python:3.11-slim).")
    ] = None,
) -> None:
    """Build the runtime images that are missing; an unchanged image is not rebuilt."""
    from orchestrator.containers import engine as eng
    from orchestrator.containers.images import ensure_runtime

    client = eng.connect()
    try:
        flavours = ["cpu"] + (["gpu"] if (gpu if gpu is not None else eng.host_gpus() > 0) else [])
        for flavour in flavours:
            say(f"{flavour} runtime: {ensure_runtime(client, flavour, base)}")  # type: ignore[arg-type]
    finally:
        client.close()


def run(
    program_dir: Annotated[Path, typer.Argument(help="A program directory (with program.toml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    folder: Annotated[Path | None, typer.Option(help="Where the variant's files go.")] = None,
    seed: Annotated[int, typer.Option(help="SELFPROG_SEED for both stages.")] = 0,
) -> None:
    """Run one program through TRAIN and EVAL in hardened containers; print its result record.

    Exits 0 whenever the orchestrator did its job, whatever the program's status.
    """
    from orchestrator.containers.docker_runner import run_program

    result = run_program(program_dir, folder, seed)
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    print_result(result)


def print_result(result: VariantResult) -> None:
    """A result record in a few human lines."""
    colour = "green" if result.status == "ok" else "red"
    say(f"variant {result.variant_id}: [{colour}]{result.status}[/]")
    if not result.protected:
        from orchestrator.peers.runtime import NOT_PROTECTED

        say(f"  [yellow]{NOT_PROTECTED}[/]")
    if result.error:
        say(f"  error: {result.error}")
    for name, value in result.metrics.items():
        say(f"  metric {name} = {value:.6g}")
    if result.telemetry:
        say(f"  telemetry: {', '.join(f'{k}={v:.4g}' for k, v in result.telemetry.items())}")
    for stage in result.stages:
        peak = f"{stage.peak_memory_bytes / 2**20:.0f} MiB" if stage.peak_memory_bytes else "n/a"
        say(f"  {stage.stage}: {stage.status}, exit {stage.exit_code}, {stage.duration_s:.2f} s, "
            f"peak memory {peak}, {len(stage.violations)} violation(s)")
    say(f"  image {result.image}\n  folder {result.folder}")


def protocol_schema() -> None:
    """Print the protocol's JSON Schema (generated from the pydantic models)."""
    from sandbox.protocol import json_schema

    print(json.dumps(json_schema(), indent=2))
