"""Prompts for the instruction-following backends (``hf``, ``openai``).

A prompt holds the program's goal and metric, the parent's source, its ancestors' metric history,
the last failures with trimmed error tails, and the edit format. It is fitted to the model's
context: failures go first (oldest first), then history, then the description is cut; the
source of the editable files is never cut. A source that cannot fit is a ``context`` rejection.
With no parent, the prompt asks for whole files written from the task's spec and skeleton.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.generators.base import Failure, GenerationRequest, Parent, Reason, Rejected
from orchestrator.generators.config import PromptConfig
from orchestrator.program import Program

SYSTEM = (
    "You are an expert machine-learning engineer. You improve a Python program by editing its "
    "source. Answer with edits only, in the format asked for; explain nothing at length."
)

EDIT_FORMAT = """\
Answer with one or more SEARCH/REPLACE blocks. Each block names its file on the line before it:

{path}
<<<<<<< SEARCH
lines copied exactly from the current file (enough to match one place only)
=======
the lines that replace them
>>>>>>> REPLACE

Rules: the SEARCH text must match the file exactly once; edit only these files: {files}; keep
the program valid Python. Make one focused change that you expect to improve {metric}."""

WRITE_FORMAT = """\
Answer with the complete content of each file, each in its own fenced block whose opening line
names the file, e.g.:

```python {path}
...the whole file...
```

Write only these files: {files}. Keep the skeleton's structure and its reporting calls."""


@dataclass
class Prompt:
    messages: list[dict[str, str]]
    """Chat messages (system, user) for chat models."""
    dropped: list[str] = field(default_factory=list)
    """What was left out to fit the context, e.g. ``2 failures``."""

    @property
    def text(self) -> str:
        """The prompt as one string: what the store records and plain LMs complete."""
        return "\n\n".join(m["content"] for m in self.messages) + "\n\n"


def _metric_line(request: GenerationRequest) -> str:
    metric = request.program.manifest.metric
    better = "lower" if metric.goal == "minimize" else "higher"
    return f"Metric: {metric.name} ({metric.goal}; {better} is better)."


def _history(parent: Parent, keep: int) -> str:
    entries = parent.history[-keep:] if keep else ()
    if not entries:
        return ""
    rows = [f"- {vid}: {'failed' if m is None else f'{m:.6g}'}" for vid, m in entries]
    return "Ancestors' metric, oldest first:\n" + "\n".join(rows)


def _failures(failures: tuple[Failure, ...], tail_lines: int) -> str:
    if not failures:
        return ""
    parts = []
    for f in failures:
        tail = "\n".join(f.error_tail.rstrip().split("\n")[-tail_lines:])
        parts.append(f"- {f.variant_id} ({f.status}):\n```\n{tail}\n```")
    return "Recent attempts that failed (do not repeat them):\n" + "\n".join(parts)


def _sources(files: dict[str, str]) -> str:
    return "\n\n".join(f"{path}\n```python\n{text}```" for path, text in sorted(files.items()))


def build_prompt(
    request: GenerationRequest,
    parent: Parent | None,
    config: PromptConfig,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
) -> Prompt:
    """The prompt for one proposal from ``parent`` (None: write from the spec), fitted so that
    ``count_tokens(prompt.text) <= budget_tokens``.

    Raises:
        Rejected: (``context``) the source and edit format alone exceed the budget.
    """
    program = request.program
    description = program.manifest.program.description
    if parent is None:
        description = request.spec or task_spec(program) or description
    failures = request.failures[-config.max_failures:] if config.max_failures else ()
    history = config.max_history if parent else 0
    dropped: list[str] = []
    while True:
        prompt = _assemble(request, parent, description, failures, history, config)
        if count_tokens(prompt.text) <= budget_tokens:
            prompt.dropped = dropped
            return prompt
        if failures:
            failures, dropped = failures[1:], _count(dropped, "failure")
        elif history and parent and parent.history[-history:]:
            history, dropped = min(history, len(parent.history)) - 1, _count(dropped, "ancestor")
        elif len(description) > 200:
            description, dropped = description[: len(description) // 2] + " [...]", dropped + [
                "half the description"]
        else:
            raise Rejected(Reason.CONTEXT, f"the source alone needs more than {budget_tokens} "
                           "tokens of the model's context")


def task_spec(program: Program) -> str | None:
    """The task's spec as a generator reads it (``task.toml``), or None for a plain program."""
    from orchestrator.task import TASK_FILE, Task

    if not (program.root / TASK_FILE).is_file():
        return None
    return Task.load(program.root).prompt()


def _count(dropped: list[str], what: str) -> list[str]:
    prefix = f"{what}s dropped: "
    for i, entry in enumerate(dropped):
        if entry.startswith(prefix):
            return dropped[:i] + [f"{prefix}{int(entry[len(prefix):]) + 1}"] + dropped[i + 1 :]
    return dropped + [f"{prefix}1"]


def _assemble(request: GenerationRequest, parent: Parent | None, description: str,
              failures: tuple[Failure, ...], history: int, config: PromptConfig) -> Prompt:
    program = request.program
    editable = program.manifest.program.editable
    files = ", ".join(editable)
    metric = program.manifest.metric.name
    goal = [f"Program: {program.name}.", description.strip(), _metric_line(request)]
    if parent is None:
        skeleton = program.source_files()
        sections = [
            "\n".join(g for g in goal if g),
            "The skeleton to complete:\n\n" + _sources(skeleton),
            _failures(failures, config.error_tail_lines),
            WRITE_FORMAT.format(path=editable[0], files=files),
        ]
    else:
        scores = ", ".join(f"{k}={v:.6g}" for k, v in sorted(parent.metrics.items()))
        sections = [
            "\n".join(g for g in goal if g),
            f"Current version: {parent.variant_id}" + (f" ({scores})." if scores else "."),
            _history(parent, history),
            _failures(failures, config.error_tail_lines),
            "The current source:\n\n" + _sources(parent.files),
            EDIT_FORMAT.format(path=editable[0], files=files, metric=metric),
        ]
    user = "\n\n".join(s for s in sections if s)
    return Prompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])

