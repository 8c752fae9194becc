"""codelm and every task's reference solution run `ok` through the real sandbox, and a codelm
variant in the TRAIN stage cannot find the held-out corpus anywhere in its container."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import uuid
from pathlib import Path

import pytest

from orchestrator.containers.docker_runner import DockerRunner
from orchestrator.program import Program
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant
from tools import corpus

ROOT = Path(__file__).resolve().parents[2]
CODELM = ROOT / "programs" / "codelm"
TASKS = sorted(p.parent for p in (ROOT / "programs" / "tasks").glob("*/task.toml"))

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def runner(docker_client, runtime_image) -> DockerRunner:
    return DockerRunner(docker_client, grace_s=1.0, linger_s=30, runtime={"cpu": runtime_image})


def quick_copy(src: Path, dest: Path, budget_s: float) -> Program:
    """The program as shipped, with a test-sized training budget (and a deadline of 300 s, under
    codelm's 420: its EVAL scores ~100k held-out bytes twice and decodes 48 steps on two shared
    cores, ~85 s on an idle-ish machine, past 120 s when the machine is busy)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (dest / "program.toml").read_text()
    toml = re.sub(r"(?m)^time_budget_s = .*$", f"time_budget_s = {budget_s}", toml)
    (dest / "program.toml").write_text(re.sub(r"(?m)^timeout_s = .*$", "timeout_s = 300", toml))
    return Program.load(dest)


def run(runner: DockerRunner, program: Program, folder: Path, files: dict[str, str] | None = None):
    variant = Variant(program, files or program.source_files())
    request = RunRequest(variant=variant, run_id=f"test-programs-{uuid.uuid4().hex[:8]}",
                         folder=folder)
    return runner.run(request)


def test_codelm_runs_ok_in_the_sandbox_and_reports_held_out_bits_per_byte(runner, tmp_path):
    program = quick_copy(CODELM, tmp_path / "codelm", budget_s=4)
    result = run(runner, program, tmp_path / "variant")
    assert result.status == Status.OK, result.error
    assert 1.0 < result.metrics["val_bpb"] < 8.0
    assert result.telemetry["bytes_per_s"] > 0


@pytest.mark.parametrize("task", TASKS, ids=lambda p: p.name)
def test_every_task_reference_solution_runs_ok_in_the_sandbox(runner, tmp_path, task):
    program = quick_copy(task, tmp_path / task.name, budget_s=6)
    result = run(runner, program, tmp_path / "variant")
    assert result.status == Status.OK, result.error
    value = result.metrics[program.manifest.metric.name]
    assert math.isfinite(value)


# A variant that hunts for the held-out corpus: every copy of its compressed file (by hash), and
# every file holding one of its lines (decompressing any .xz on the way), anywhere on the disk.
PROBE = '''
def probe():
    import hashlib, lzma, os
    held_sha, train_sha = {held_sha!r}, {train_sha!r}
    snippets = [bytes.fromhex(h) for h in {snippets!r}]  # hex: this file must not match itself
    counts = dict(heldout_copies=0, heldout_snippets=0, train_copies=0, files_scanned=0)
    found = []
    for root in {roots!r}:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in ("/proc", "/sys", "/dev")]
            for name in names:
                path = os.path.join(folder, name)
                try:
                    if not os.path.isfile(path) or os.path.getsize(path) > 4_000_000:
                        continue
                    with open(path, "rb") as fh:
                        body = fh.read()
                except OSError:
                    continue
                counts["files_scanned"] += 1
                digest = hashlib.sha256(body).hexdigest()
                counts["heldout_copies"] += digest == held_sha
                counts["train_copies"] += digest == train_sha
                if name.endswith(".xz"):
                    try:
                        body = lzma.decompress(body)
                    except lzma.LZMAError:  # not xz after all: its raw bytes are scanned
                        counts["unreadable_xz"] = counts.get("unreadable_xz", 0) + 1
                if digest == held_sha or any(s in body for s in snippets):
                    counts["heldout_snippets"] += 1
                    found.append(path)
    return dict(counts, found=found[:10])
'''


def probe_source(roots: list[str]) -> str:
    held = corpus.read_part(CODELM / "data" / "heldout")
    train = corpus.read_part(CODELM / "data" / "train")
    lines = [ln for ln in held.split(b"\n") if len(ln.strip()) > 40 and ln not in train]
    return PROBE.format(
        held_sha=hashlib.sha256((CODELM / "data/heldout/corpus.txt.xz").read_bytes()).hexdigest(),
        train_sha=hashlib.sha256((CODELM / "data/train/corpus.txt.xz").read_bytes()).hexdigest(),
        snippets=[ln.hex() for ln in lines[:: max(1, len(lines) // 8)][:8]], roots=roots)


def test_the_probe_finds_the_held_out_corpus_where_it_is():
    space: dict = {}
    exec(probe_source([str(CODELM / "data")]), space)  # noqa: S102  (our own probe, on the host)
    found = space["probe"]()
    assert found["heldout_copies"] == 1 and found["heldout_snippets"] == 1
    assert found["train_copies"] == 1 and found["found"][0].endswith("heldout/corpus.txt.xz")


def test_a_codelm_variant_cannot_find_held_out_data_in_its_train_stage(runner, tmp_path):
    program = quick_copy(CODELM, tmp_path / "codelm", budget_s=3)
    seed = program.source_files()["train.py"]
    hunt = ("\n    import json\n    from sandbox import report\n"
            "    report.log('probe ' + json.dumps(probe()))\n    main()\n")
    variant = seed.replace("\nif __name__ == \"__main__\":\n    main()\n",
                           probe_source(["/"]) + "\nif __name__ == \"__main__\":" + hunt)
    assert variant != seed
    result = run(runner, program, tmp_path / "variant", {"train.py": variant})
    assert result.status == Status.OK, result.error
    log = (tmp_path / "variant" / "train.log").read_text()
    lines = [line for line in log.splitlines() if "probe {" in line]
    assert len(lines) == 1, f"the probe did not report: {log[-2000:]}"
    found = json.loads(lines[0].split("probe ", 1)[1])
    assert found["train_copies"] >= 1 and found["files_scanned"] > 1000  # it did look
    assert found["heldout_copies"] == 0 and found["heldout_snippets"] == 0, found["found"]
