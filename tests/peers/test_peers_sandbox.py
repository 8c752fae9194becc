"""Peer problems on the real engine: import with the seed check, the three forgery kinds ending
at an honest score in split isolation (while the peer's own way is fooled), a hanging call killed,
shared isolation labelled, and a short evolution with ``mutate``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.containers.docker_runner import DockerRunner, run_seed
from orchestrator.errors import ConfigError
from orchestrator.peers import formats
from orchestrator.peers.importer import import_problem, with_isolation
from orchestrator.program import Program
from orchestrator.result import Status, VariantResult
from orchestrator.runner import RunRequest, Variant
from sandbox import peer_eval

pytestmark = pytest.mark.docker
PROBLEMS = Path(__file__).parent / "problems"
START = "# EVOLVE-BLOCK-START\n"


@pytest.fixture(scope="module")
def imported(runtime_image, tmp_path_factory):
    """Both test problems imported once (one seed run in each mode each)."""
    where = tmp_path_factory.mktemp("imported")
    done = {kind: import_problem(kind, PROBLEMS / name, where / name, checks=1, runs=run_seed)
            for kind, name in (("openevolve", "oe_fmin"), ("shinka", "sh_pack"))}
    yield done
    from orchestrator.containers.engine import connect

    client = connect()
    try:
        for image in client.images.list(name="selfprog-variant"):
            if any(t.split(":")[1].startswith(("oe_fmin-", "sh_pack-", "oe_slow-"))
                   for t in image.tags):
                client.images.remove(image.id, force=True)
    finally:
        client.close()


def run(client, program: Program, files: dict[str, str], folder: Path) -> VariantResult:
    variant = Variant(program, files)
    request = RunRequest(variant=variant, run_id=f"peers-{uuid.uuid4().hex[:8]}", folder=folder,
                         seed=0)
    return DockerRunner(client).run(request)


def peer_way(program: Program, files: dict[str, str], tmp_path: Path) -> float:
    """The variant scored as the peer runs it: the evaluator imports it in its own process
    (OpenEvolve: stage 1 then stage 2 in one process; ShinkaEvolve: evaluate.py as a script)."""
    name = program.manifest.program.entrypoint
    work = tmp_path / "peer"
    work.mkdir()
    for rel in formats.files(program.root):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes((program.root / rel).read_bytes())
    (work / name).write_text(files[name])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([peer_eval.SHIMS, str(Path.cwd())])}
    if program.manifest.program.format == "openevolve":
        code = ("import evaluator as e; e.evaluate_stage1('initial_program.py'); "
                "print(e.evaluate_stage2('initial_program.py').metrics['combined_score'])")
        out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, check=True,
                             capture_output=True, text=True, timeout=120)
        return float(out.stdout.strip().splitlines()[-1])
    subprocess.run([sys.executable, "evaluate.py", "--program_path", name, "--results_dir",
                    "results"], cwd=work, env=env, check=True, capture_output=True, timeout=120)
    assert json.loads((work / "results" / "correct.json").read_text())["correct"] is True
    return float(json.loads((work / "results" / "metrics.json").read_text())["combined_score"])


def test_import_copies_the_tree_untouched_and_the_seed_check_agrees(imported):
    program, check = imported["openevolve"]
    assert (program.root / "LICENSE").read_text() == (PROBLEMS / "oe_fmin" / "LICENSE").read_text()
    assert formats.tree_sha256(program.root) == formats.tree_sha256(PROBLEMS / "oe_fmin")
    assert program.manifest.peer.tree_sha256 == formats.tree_sha256(PROBLEMS / "oe_fmin")
    assert check.split == check.shared and 0.5 < check.split[0] < 0.9
    shinka, check = imported["shinka"]
    assert check.split == check.shared == [pytest.approx(0.9)]
    assert shinka.manifest.program.format == "shinka"


NUMPY_PATCH = ("import numpy as _np\n"
               "_np.linalg.norm = lambda *a, **k: 0.0  # the evaluator's numpy, if shared\n")
PICKLE_PAYLOAD = (  # every float() of the module makes a float whose unpickling patches numpy
    "import builtins as _b\n"
    "class _Sly(_b.float):\n"
    "    def __reduce__(self):\n"
    "        return (eval, (\"(__import__('numpy').linalg.__setattr__('norm', lambda *a, **k: 0.0)"
    ", \" + repr(_b.float(self)) + \")[1]\",))\n"
    "float = _Sly\n")


@pytest.mark.parametrize("forgery", [NUMPY_PATCH, PICKLE_PAYLOAD], ids=["numpy-patch", "pickle"])
def test_openevolve_forgeries_fool_the_peer_but_score_honestly_in_split(
        imported, docker_client, tmp_path, forgery):
    program, check = imported["openevolve"]
    seed = program.source_files()["initial_program.py"]
    if forgery is PICKLE_PAYLOAD:
        forged = seed.replace("# EVOLVE-BLOCK-END", forgery + "# EVOLVE-BLOCK-END")
    else:
        forged = seed.replace(START, START + forgery)
    files = {"initial_program.py": forged}
    assert peer_way(program, files, tmp_path) == 1.0  # the attack works where the peer runs it
    result = run(docker_client, program, files, tmp_path / "run")
    assert result.status is Status.OK, result.error
    assert result.protected
    assert result.metrics["combined_score"] == pytest.approx(check.split[0], abs=1e-12)


EXIT_HOOK = (
    "import atexit as _atexit, json as _json, os as _os, sys as _sys\n"
    "def _rewrite():\n"
    "    if '--results_dir' in _sys.argv:\n"
    "        d = _sys.argv[_sys.argv.index('--results_dir') + 1]\n"
    "        _json.dump({'combined_score': 99.0}, open(_os.path.join(d, 'metrics.json'), 'w'))\n"
    "        _json.dump({'correct': True, 'error': None}, "
    "open(_os.path.join(d, 'correct.json'), 'w'))\n"
    "_atexit.register(_rewrite)\n")


def test_a_shinka_exit_hook_fools_the_peer_but_not_split(imported, docker_client, tmp_path):
    program, _ = imported["shinka"]
    seed = program.source_files()["initial.py"]
    # overlapping circles (honestly incorrect) plus a hook that rewrites the results files
    forged = seed.replace("radii = np.full(n, 0.45 / side)", "radii = np.full(n, 0.5)")
    forged = forged.replace(START, START + EXIT_HOOK)
    files = {"initial.py": forged}
    assert peer_way(program, files, tmp_path) == 99.0
    result = run(docker_client, program, files, tmp_path / "run")
    assert result.status is Status.INVALID
    assert "marked the program incorrect" in (result.error or "")
    assert result.metrics == {}


def test_shared_isolation_is_labelled_not_protected_and_private_metrics_never_shown(imported):
    program, check = imported["shinka"]
    split, shared = check.results
    assert split.protected and shared.protected is False
    for result in (split, shared):
        assert result.status is Status.OK and result.metrics["combined_score"] == pytest.approx(0.9)
        assert "public.best_sum" in result.metrics
        assert not any("private" in k or "reported" in k for k in result.metrics)
    assert json.loads(Path(shared.folder, "result.json").read_text())["protected"] is False
    log = Path(shared.folder, "eval.log").read_text()
    assert "NOT protected" in log and "[peer feedback, untrusted] text_feedback" in log
    assert "reported" not in log
    assert "NOT protected" not in Path(split.folder, "eval.log").read_text()
    assert with_isolation(program, "shared").manifest.program.isolation == "shared"


def test_a_region_rule_break_is_refused_before_any_container(imported, docker_client, tmp_path):
    program, _ = imported["openevolve"]
    seed = program.source_files()["initial_program.py"]
    files = {"initial_program.py": seed.replace("return float(x)", "return 1.5 + 0 * float(x)")}
    result = run(docker_client, program, files, tmp_path / "run")
    assert result.status is Status.INVALID and "region rule" in (result.error or "")
    assert result.stages == [] and result.image is None


def test_a_call_that_hangs_in_the_program_server_is_killed_at_the_stage_timeout(
        imported, docker_client, tmp_path):
    program, _ = imported["openevolve"]
    root = tmp_path / "oe_slow"
    for rel in formats.files(program.root) + ["program.toml"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((program.root / rel).read_bytes())
    toml = (root / "program.toml").read_text().replace('name = "oe_fmin"', 'name = "oe_slow"')
    (root / "program.toml").write_text(toml.replace("timeout_s = 30.0", "timeout_s = 15.0"))
    slow = Program.load(root)
    seed = slow.source_files()["initial_program.py"]
    hang = seed.replace(START, START + "import time as _t\n").replace(
        "    step = 1.0\n", "    step = 1.0\n    if iterations > 100:\n        _t.sleep(600)\n")
    result = run(docker_client, slow, {"initial_program.py": hang}, tmp_path / "run")
    # stage 1 (50 iterations) passed its gate; stage 2 hung and was killed: stage 1's score stays
    assert result.status is Status.OK, result.error
    assert result.metrics["stage2_passed"] == 0.0 and result.metrics["timeout"] == 1.0
    assert "runs" not in result.metrics
    assert result.stage("eval").duration_s < 60  # not the 600 s the call sleeps


def test_a_problem_split_cannot_run_is_refused_with_the_reason(tmp_path):
    root = tmp_path / "reads"
    root.mkdir()
    (root / "initial_program.py").write_text("# EVOLVE-BLOCK-START\nX = 1\n# EVOLVE-BLOCK-END\n")
    (root / "evaluator.py").write_text(
        "def evaluate(program_path):\n    return {'combined_score': len(open(program_path)"
        ".read())}\n")
    with pytest.raises(ConfigError, match="reads the program as text.*--isolation shared"):
        import_problem("openevolve", root, tmp_path / "out", checks=0)
    assert not (tmp_path / "out").exists()
    program, _ = import_problem("openevolve", root, tmp_path / "out", checks=0,
                                isolation="shared")
    assert program.manifest.program.isolation == "shared"


def test_a_short_evolution_with_mutate(imported, tmp_path):
    program, _ = imported["openevolve"]
    runs = tmp_path / "runs"
    done = CliRunner().invoke(app, ["evolve", "--program", str(program.root), "--variants", "1",
                                    "--generator", "mutate", "--run-id", "peers",
                                    "--no-live", "--set", f'runs_dir="{runs}"'])
    assert done.exit_code == 0, done.output
    summary = json.loads((runs / "peers" / "summary.json").read_text())
    assert summary["counts"]["variants"] == 2 and summary["protected"] is True
    # a changed literal may break the program (then it is invalid, honestly), never the host
    assert set(summary["counts"]["statuses"]) <= {"ok", "invalid"}, summary
    assert summary["counts"]["statuses"].get("ok", 0) >= 1, summary
    said = b"mutated numeric literals inside EVOLVE-BLOCK regions"
    assert any(said in p.read_bytes() for p in (runs / "peers").rglob("*") if p.is_file())


def test_a_requirement_missing_from_the_runtime_enters_the_problem_image_offline(
        imported, docker_client, runtime_image, tmp_path):
    from orchestrator.containers import problem_image

    program, _ = imported["openevolve"]
    peer = program.manifest.peer.model_copy(update={"requirements": ("sortedcontainers",)})
    needs = Program(program.root, program.manifest.model_copy(update={"peer": peer}))
    tag = problem_image.ensure(docker_client, runtime_image, needs)
    try:
        assert tag.startswith("selfprog-problem:oe_fmin-")
        assert problem_image.ensure(docker_client, runtime_image, needs) == tag  # built once
        out = docker_client.containers.run(
            tag, entrypoint=["python", "-c", "import sortedcontainers; print('ok')"],
            network_mode="none", remove=True)
        assert out.strip() == b"ok"
        assert problem_image.ensure(docker_client, runtime_image, program) == runtime_image
    finally:
        docker_client.images.remove(tag, force=True)
