"""Auxiliary tasks: a task spec a person writes, from which a generator programs a sub-model.

A task is a program directory (``program.toml``: metric, goal, resources, data — the same
contract and the same two stages as any program) plus ``task.toml``, the part written for the
generator: what the task is, what the train stage gets, what the sub-model must export, and the
reference solution or skeleton to start from (optional: a generator may write it from nothing).

    [task]
    description = "Classify 8x8 images of handwritten digits ..."
    train_data = "SELFPROG_DATA/digits.npz: x float32 [N, 64] ..."
    export = "SELFPROG_OUT/model.pt: TorchScript; forward(x: float32 [N, 64]) -> [N, 10]"
    reference = "train.py"
    source = "where the data comes from, and its licence"
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.errors import ConfigError
from orchestrator.program import Program
from orchestrator.toml_model import Frozen, load_toml_model

TASK_FILE = "task.toml"
TASKS_DIR = Path(__file__).resolve().parent.parent / "programs" / "tasks"


class TaskSection(Frozen):
    description: str = Field(min_length=20)
    """What the sub-model must do, in words a language model reads in its prompt."""
    train_data: str = Field(min_length=10)
    """What the TRAIN stage finds under ``SELFPROG_DATA``: files, arrays, shapes, dtypes."""
    export: str = Field(min_length=10)
    """What the sub-model must leave under ``SELFPROG_OUT`` for the trusted evaluator."""
    reference: str | None = None
    """A working solution or a minimal skeleton to start from (the entrypoint); None: none."""
    source: str = ""
    """Where the data comes from and under which licence."""


class TaskFile(Frozen):
    task: TaskSection


class Task:
    """A task spec: its ``task.toml`` and the program it is run as."""

    def __init__(self, spec: TaskSection, program: Program):
        self.spec = spec
        self.program = program

    @classmethod
    def load(cls, root: str | Path) -> Task:
        """Read ``root/task.toml`` and ``root/program.toml``.

        Raises:
            ConfigError: either file is missing or invalid (the message names the key), or the
                reference is not the program's entrypoint.
        """
        root = Path(root).resolve()
        path = root / TASK_FILE
        if not path.is_file():
            raise ConfigError(f"{root} is not a task: it has no {TASK_FILE}")
        spec = load_toml_model(TaskFile, path).task
        program = Program.load(root)
        if spec.reference and spec.reference != program.manifest.program.entrypoint:
            raise ConfigError(f"{path}: reference {spec.reference!r} must be the program's "
                              f"entrypoint {program.manifest.program.entrypoint!r}")
        return cls(spec, program)

    @property
    def name(self) -> str:
        return self.program.name

    def prompt(self) -> str:
        """The spec as a generator reads it: task, data, export, metric and budget."""
        m, r = self.program.manifest.metric, self.program.manifest.resources
        entry = self.program.manifest.program.entrypoint
        return "\n\n".join([
            f"Task: {self.name}\n{self.spec.description}",
            f"Train data:\n{self.spec.train_data}",
            f"Export:\n{self.spec.export}",
            f"Metric: {m.name} ({m.goal}), computed by a trusted evaluator on held-out data.",
            f"Budget: {r.budget_s(on_gpu=False):g} s of training (SELFPROG_TIME_BUDGET_S), "
            f"{r.cpus:g} CPUs, {r.memory} memory. Report telemetry with "
            "`from sandbox import report; report.progress(step=..., **metrics)`.",
            f"Write {entry}: one Python file using torch and numpy only.",
        ])


def discover(root: Path = TASKS_DIR) -> list[Task]:
    """Every task under ``root``, by name."""
    return [Task.load(p.parent) for p in sorted(root.glob(f"*/{TASK_FILE}"))]
