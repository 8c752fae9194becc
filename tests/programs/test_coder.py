"""coder: a pretrained causal LM as the self. Its export is data only, its evaluator runs each
completion under limits, and the whole cycle (fine-tune, export, load as generator, propose,
evaluate) runs on the real engine with a tiny model made here (there is no model hub)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from pathlib import Path

import pytest

from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.containers.sampler import SandboxedCompleter
from orchestrator.errors import CodeLMError, ConfigError
from orchestrator.generators.auto import codelm_loader
from orchestrator.generators.base import GenerationRequest, Parent
from orchestrator.generators.config import CodeLMConfig, GeneratorConfig
from orchestrator.generators.selfgen import SelfGenerator
from orchestrator.program import Program
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant
from sandbox import hfexport
from tools import coder_base

ROOT = Path(__file__).resolve().parents[2]
CODER = ROOT / "programs" / "coder"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A GPT-2 of ~150k random weights with a 512-token BPE trained on the coder's corpus."""
    folder = tmp_path_factory.mktemp("coder") / "base"
    coder_base.tiny(folder, text=coder_base.corpus_text(100_000))
    folder.chmod(0o755)
    return folder


def clone(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    dest.chmod(0o755)
    for path in dest.iterdir():
        path.chmod(0o644)
    return dest


# -- what an export may hold ----------------------------------------------------------------------


class Payload:
    """Unpickling it creates a marker file: what a pickled ``pytorch_model.bin`` can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tiny_base_passes_the_data_only_check(tiny_base):
    config = hfexport.check(tiny_base)
    assert config["model_type"] == "gpt2"


@pytest.mark.parametrize("attack", ["pickle", "auto_map", "tokenizer_auto_map", "python_file",
                                    "symlink", "no_safetensors"])
def test_an_export_that_could_run_code_is_refused_before_anything_loads(tiny_base, tmp_path,
                                                                        attack):
    marker = tmp_path / "marker"
    folder = clone(tiny_base, tmp_path / "export")
    if attack == "pickle":
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    elif attack == "auto_map":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(config))
    elif attack == "tokenizer_auto_map":
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "EvilTokenizer",
             "auto_map": {"AutoTokenizer": ["evil.Evil", None]}}))
    elif attack == "python_file":
        (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    elif attack == "symlink":
        (folder / "generation_config.json").unlink()
        (folder / "generation_config.json").symlink_to("/etc/passwd")
    else:
        (folder / "model.safetensors").unlink()
    with pytest.raises(hfexport.ExportError):
        hfexport.check(folder)
    with pytest.raises(CodeLMError, match="refused"):
        SandboxedCompleter(folder)
    for sandboxed in (True, False):  # neither the container nor the in-process path loads it
        with pytest.raises(ConfigError):
            codelm_loader(CodeLMConfig(sandboxed=sandboxed))(folder)
    assert not marker.exists()


# -- the evaluator's runner -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("coder_evaluate", CODER / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_held_out_problem_fails_an_empty_body(evaluator):
    """Each problem's tests assert something: a function returning None passes none."""
    problems = json.loads((CODER / "data/heldout/problems.json").read_text())["problems"]
    assert 20 <= len(problems) <= 40
    assert len({p["name"] for p in problems}) == len(problems)
    for p in problems[:8]:
        assert not evaluator.run_candidate(p["prompt"] + "    return None\n\n" + p["tests"])


def test_a_right_completion_passes_and_a_wrong_one_fails(evaluator):
    problems = {p["name"]: p for p in json.loads(
        (CODER / "data/heldout/problems.json").read_text())["problems"]}
    right = {"add": "    return a + b\n",
             "factorial": "    return 1 if n < 2 else n * factorial(n - 1)\n",
             "is_prime": "    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
             "binary_search": "    return items.index(target) if target in items else -1\n"}
    for name, body in right.items():
        assert evaluator.run_candidate(problems[name]["prompt"] + body + "\n" +
                                       problems[name]["tests"]), name
    assert not evaluator.run_candidate(problems["add"]["prompt"] + "    return a - b\n\n" +
                                       problems["add"]["tests"])


def test_a_completion_cannot_write_outside_its_temp_folder_or_outlive_its_limits(
        evaluator, tmp_path, monkeypatch):
    victim = tmp_path / "score.json"
    victim.write_text("{}")
    tmp_path.chmod(0o777)
    attack = (f"open({str(victim)!r}, 'w').write('{{\"pass\": 1}}')\n"
              f"open({str(tmp_path / 'planted')!r}, 'w').write('x')\n")
    assert not evaluator.run_candidate(attack)
    assert victim.read_text() == "{}" and not (tmp_path / "planted").exists()
    monkeypatch.setattr(evaluator, "RUN_TIMEOUT_S", 2.0)
    assert not evaluator.run_candidate("while True:\n    pass\n")
    assert not evaluator.run_candidate("x = bytearray(2 * 1024 ** 3)\n")  # over RLIMIT_AS


# -- the whole cycle on the real engine -----------------------------------------------------------


@pytest.mark.docker
@pytest.mark.slow
def test_coder_cycle_fine_tune_export_load_as_generator_propose_evaluate(
        docker_client, runtime_image, tiny_base, tmp_path):
    program_dir = tmp_path / "coder"
    shutil.copytree(CODER, program_dir, ignore=shutil.ignore_patterns("__pycache__", "base"))
    shutil.copytree(tiny_base, program_dir / "data/train/base")
    toml = (program_dir / "program.toml").read_text().replace("time_budget_s = 60",
                                                                "time_budget_s = 3")
    (program_dir / "program.toml").write_text(toml)
    program = Program.load(program_dir)
    runner = DockerRunner(docker_client, grace_s=1.0, linger_s=30,
                          runtime={"cpu": runtime_image})

    def run(files: dict[str, str], name: str):
        request = RunRequest(variant=Variant(program, files),
                             run_id=f"test-coder-{uuid.uuid4().hex[:8]}", folder=tmp_path / name)
        return runner.run(request)

    seed = run(program.source_files(), "seed")  # fine-tune and export, then split evaluation
    assert seed.status == Status.OK, seed.error
    assert 0.5 < seed.metrics["val_bpb"] < 12.0
    assert 0.0 <= seed.metrics["pass_at_1"] <= 1.0
    artifacts = tmp_path / "seed" / "artifacts"
    assert {p.name for p in artifacts.iterdir()} <= hfexport.ALLOWED

    # a tokenizer config naming a custom class (and no code to find it) is inert: the sampler
    # reads tokenizer.json with the tokenizers library and never looks the class up
    export = clone(artifacts, tmp_path / "export")
    (export / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "EvilTok"}))
    config = GeneratorConfig(backend="self", codelm=CodeLMConfig(
        model=str(export), hole_fraction=1.0, timeout_s=240))
    load = codelm_loader(config.codelm)
    generator = SelfGenerator(config, load(export), load)  # the export as the generator
    parent = Parent("seed", program.source_files())
    proposals = generator.propose(GenerationRequest(program, (parent,), n=2, seed=1))
    valid = [p for p in proposals if p.valid]
    assert valid, [p.rejection for p in proposals]
    assert all(p.call is not None and p.call.backend == "self" for p in valid)

    child = run(valid[0].files, "child")  # what the self wrote, fine-tuned and scored
    assert child.status == Status.OK, child.error
    assert child.metrics["val_bpb"] > 0
