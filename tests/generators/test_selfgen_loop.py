"""The evolve loop with the ``self`` generator: the program's model writes children, a crowned
child's model writes the next ones, and the report says which generation's model wrote which."""

from __future__ import annotations

from pathlib import Path

from orchestrator.completer import CompletionRequest, ScoreRequest
from orchestrator.errors import CodeLMError
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.selfgen import SelfGenerator
from orchestrator.program import Program
from orchestrator.runs.report import write_report
from tests.evolution.fakes import FakeRunner, make_program
from tests.evolution.test_loop import evolve


class Knows:
    """A fake model that finds ``X`` likelier the nearer it is to 3 (the fake runner's optimum),
    and remembers which folder it was loaded from."""

    context = 2048

    def __init__(self, folder: Path | None = None):
        self.folder = folder

    def complete_many(self, requests: list[CompletionRequest]) -> list[str | CodeLMError]:
        return ["" for _ in requests]

    def score_many(self, requests: list[ScoreRequest]) -> list[list[float] | CodeLMError]:
        return [[-4.0 * abs(float(c.split()[0]) - 3) for c in r.continuations]
                for r in requests]


def test_self_written_children_are_crowned_and_the_report_names_their_writers(tmp_path):
    program = make_program(tmp_path / "prog")
    (program.root / "train.py").write_text("X = 0.0  # search: float[0, 6]\n")  # declared
    loaded: list[Path] = []

    def load(folder: Path) -> Knows:
        loaded.append(folder)
        return Knows(folder)

    config = GeneratorConfig(backend="self", temperature=0.5,
                             codelm=CodeLMConfig(hole_fraction=1.0, hole_grid=13))
    gen = SelfGenerator(config, Knows(), load)
    evo, out = evolve(tmp_path, FakeRunner(), gen, program=Program.load(program.root),
                      **{"budget.variants": 6})
    assert out.best_value is not None and out.best_value < out.seed_value
    calls = evo.store.calls()
    assert calls and all(c["backend"] == "self" and c["kind"] == "hole" for c in calls)
    admitted = [v for v in evo.store.variants() if v.verdict == "admitted"]
    children = {c["variant_id"] for c in calls}
    assert any(v.id in children for v in admitted), "a child written by the self was admitted"
    # each crowning switched the model to that child's export, and later calls record it
    assert loaded and all(p.name == "artifacts" for p in loaded)
    writers = {c["generator"] for c in calls}
    assert "" in writers and writers - {""} <= {v.id for v in admitted}
    assert writers & children, "a crowned child's model wrote a later child"
    page = write_report(evo.store, evo.program).read_text()
    section = page[page.index('id="written-by"'):page.index("</table>", page.index("written-by"))]
    assert "the given model" in section
    for writer in writers - {""}:
        assert f'href="#v{writer}"' in section
