"""The evolve configuration: one TOML file plus command-line overrides.

Every section is a frozen pydantic model that rejects unknown keys, so a typo fails at once with
the key named. The embedded defaults evolve ``programs/codelm`` for about 15 minutes with the
default generator on a 2-core CPU machine; on a GPU workstation the slots follow the GPUs found.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from orchestrator.errors import ConfigError
from orchestrator.generators.config import GeneratorConfig
from orchestrator.toml_model import Frozen, read_toml, validate


class SelectionConfig(Frozen):
    strategy: Literal["greedy", "elitist"] = "greedy"
    """``greedy``: the paper's loop (best so far is the parent); ``elitist``: a population with
    tournament sampling."""
    population: int = Field(default=8, ge=1, le=1000)
    """Members the elitist strategy keeps."""
    tournament: int = Field(default=3, ge=1, le=100)
    """Members drawn per tournament; the best of them is the parent."""
    k: float = Field(default=2.0, ge=0)
    """A child beating the best by less than ``k`` × the noise floor is re-evaluated first."""
    rechecks: int = Field(default=1, ge=0, le=10)
    """Most extra seeds one child is evaluated with before it is crowned or rejected."""
    noise_seeds: int = Field(default=3, ge=2, le=20)
    """Seeds the seed variant is run with to measure the noise floor, when the program's
    ``[metric] noise`` is unset."""


class BudgetConfig(Frozen):
    variants: int | None = Field(default=None, ge=0)
    """Most new variants to propose (the seed not counted); None: no limit."""
    wall_time_s: float | None = Field(default=900.0, gt=0)
    """Stop starting evaluations that would end after this many seconds; None: no limit."""
    max_rejections: int = Field(default=50, ge=1)
    """Consecutive generation calls that yield no new variant before the run gives up."""


class SlotsConfig(Frozen):
    count: int | None = Field(default=None, ge=1, le=256)
    """Variants evaluated at once. None: one per GPU found (each given its GPUs), or on a CPU
    host as many as the cores fit at the program's ``cpus``."""
    gpus_per_slot: int | None = Field(default=None, ge=0, le=64)
    """GPU ids each slot owns. None: the program's ``resources.gpus`` (at least 1 on GPU hosts)."""
    lookahead: int = Field(default=2, ge=0, le=64)
    """Proposals generated ahead of the free slots, so a slot never waits for the generator."""
    infra_retries: int = Field(default=3, ge=0, le=20)
    """Attempts after an ``infra_error`` before the evaluation is recorded as such."""


class TrackingConfig(Frozen):
    mlflow: bool = False
    """Log each variant to MLflow as its verdict lands (needs ``selfprog[mlflow]``); a failure
    is a warning, never the end of the run. ``selfprog export mlflow`` does the same after."""
    mlflow_uri: str | None = None
    """The MLflow tracking URI; None: a SQLite file in the run folder (``mlflow.db``)."""


class ClusterConfig(Frozen):
    backend: Literal["local", "ray"] = "local"
    """Where variants run: ``local`` (this machine's Docker engine) or ``ray`` (the nodes of a
    Ray cluster, each in its own Docker engine; see docs/cluster.md)."""
    address: str | None = None
    """The Ray head's ``host:port``; None: ``$RAY_ADDRESS``, else a head on this machine."""
    deadline_slack_s: float = Field(default=600.0, gt=0)
    """Seconds a variant may take on a node beyond its two stage timeouts (image builds,
    transfers) before the head gives up on the node agent and re-queues it."""


class EvolveConfig(Frozen):
    program: Path = Path("programs/codelm")
    """The program directory to evolve."""
    runs_dir: Path = Path("runs")
    """Where run folders (store, variant folders, report) are written."""
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Name of the run folder; None: a timestamp."""
    seed: int = 0
    """Seeds the parent draws and the generator; evaluation seeds count up from it."""
    keep: tuple[str, ...] = ()
    """Variant ids that ``selfprog gc`` must keep besides the best."""
    generator: GeneratorConfig = GeneratorConfig()
    """The code generator (see orchestrator/generators/config.py)."""
    selection: SelectionConfig = SelectionConfig()
    """Parent choice, survival and noise-aware acceptance."""
    budget: BudgetConfig = BudgetConfig()
    """When the run stops."""
    slots: SlotsConfig = SlotsConfig()
    """Parallel sandbox slots."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking outside the run folder (MLflow)."""
    cluster: ClusterConfig = ClusterConfig()
    """Where the slots are: this machine, or a Ray cluster."""
    from_spec: bool = False
    """Start with no reference: the shipped source is never run nor shown, generation 0 is
    written by the model from the task's spec (``task.toml``), and the drafts that run ``ok``
    become the population. Needs a language-model backend (``hf`` or ``openai``)."""


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> EvolveConfig:
    """Read a TOML config (or the embedded defaults) and apply dotted-key overrides.

    Args:
        path: a TOML file; None uses the defaults alone.
        overrides: e.g. ``{"budget.wall_time_s": 60, "generator.backend": "mutate"}``.
        base: settings to start from instead of a file (a resumed run's stored config).

    Raises:
        ConfigError: the file is missing or not TOML, or a key is unknown or its value invalid;
            the message names the key.
    """
    data: dict[str, Any] = dict(base or {})
    where = "defaults" if base is None else "the stored config"
    if path is not None:
        where = str(path)
        data = read_toml(Path(path))
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    return validate(EvolveConfig, data, where)


def parse_override(text: str) -> tuple[str, Any]:
    """``"budget.variants=10"`` → ``("budget.variants", 10)``; the value is read as TOML when it
    parses (numbers, booleans, quoted strings, arrays) and kept as a string otherwise."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. budget.variants=10)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[leaf] = value
