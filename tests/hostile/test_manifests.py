"""Careless manifests: what a program's author can get wrong so that a variant (which cannot
change the manifest, but shares the program's files) would see the host or the held-out data.

Each trap is refused before any container starts, naming the key; where the folder changes after
the manifest was loaded, the real runner refuses it too (a ``ConfigError``, never an
``infra_error`` after three engine attempts) and leaves nothing behind. Links that a manifest may
keep (inside the data folder) are followed from inside a real TRAIN container and lead nowhere.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.containers.hardening import LABEL_RUN
from orchestrator.errors import ConfigError
from orchestrator.program import Program
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant
from tests.hostile.kit import HOST_SECRET, make_program

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HONEST = "print('honest')\n"


def _replace_with_link(folder: Path, target: Path | str) -> None:
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.symlink_to(target)


def _nothing_left(docker_client, run_id: str) -> None:
    label = {"label": f"{LABEL_RUN}={run_id}"}
    assert docker_client.api.containers(all=True, filters=label) == []
    assert (docker_client.api.volumes(filters=label).get("Volumes") or []) == []


def _refused_by_runner(runner, docker_client, program: Program, folder: Path, match: str) -> None:
    run_id = f"manifest-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match):
        runner.run(RunRequest(variant=Variant(program, {"train.py": HONEST}), run_id=run_id,
                              folder=folder))
    assert time.monotonic() - started < 60, "refused at once, not after engine retries"
    _nothing_left(docker_client, run_id)


@pytest.fixture
def program(tmp_path) -> Program:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(HOST_SECRET)
    return make_program(tmp_path / "program", HONEST)


def test_a_train_folder_linked_to_the_hosts_root_is_refused(program):
    _replace_with_link(program.root / "data/train", "/")
    with pytest.raises(ConfigError, match=r"data\.train 'data/train' leads to /, outside"):
        Program.load(program.root)


def test_a_train_folder_linked_to_heldout_or_overlapping_it_is_refused(program):
    _replace_with_link(program.root / "data/train", "heldout")
    with pytest.raises(ConfigError, match="overlap"):
        Program.load(program.root)
    toml = program.root / "program.toml"
    toml.write_text(toml.read_text().replace('train = "data/train"', 'train = "data"'))
    with pytest.raises(ConfigError, match="overlap"):
        Program.load(program.root)


@pytest.mark.parametrize("link", ["data/train/secret", "data/heldout/secret", "data/climb"])
def test_a_link_in_a_data_folder_that_leads_out_of_the_program_is_refused(program, tmp_path, link):
    """It would be dead inside the container anyway: the author hears it now, not from a run."""
    depth = "../" * link.count("/")
    (program.root / link).symlink_to(f"{depth}../outside/secret.txt")
    with pytest.raises(ConfigError, match=f"'{link}' is a symlink to .*outside"):
        Program.load(program.root)


def test_a_program_file_linked_to_a_host_file_is_refused(program, tmp_path):
    (program.root / "helper.py").symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(ConfigError, match="'helper.py' is a symlink to .*outside"):
        Program.load(program.root)


def test_a_manifest_linked_from_outside_is_refused(program, tmp_path):
    toml = program.root / "program.toml"
    (tmp_path / "outside" / "program.toml").write_text(toml.read_text())
    toml.unlink()
    toml.symlink_to(tmp_path / "outside" / "program.toml")
    with pytest.raises(ConfigError, match="program.toml: a symlink to"):
        Program.load(program.root)


@pytest.mark.parametrize(("line", "key"), [
    ('memory = "0"', "resources.memory"), ('memory = "0.4"', "resources.memory"),
    ('memory = "5m"', "resources.memory"), ('disk = "0"', "resources.disk"),
    ("cpus = 0.001", "resources.cpus"), (f"cpus = {(os.cpu_count() or 1) + 1}", "resources.cpus"),
])
def test_resources_the_engine_would_refuse_or_ignore_are_a_config_error(program, line, key):
    toml = program.root / "program.toml"
    name = line.split(" =")[0]
    kept = [li for li in toml.read_text().splitlines() if not li.startswith(f"{name} =")]
    kept.insert(kept.index("[resources]") + 1, line)
    toml.write_text("\n".join(kept) + "\n")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Program.load(program.root)


def test_the_cli_refuses_such_a_manifest_with_a_clear_error_and_exit_2(program):
    toml = program.root / "program.toml"
    toml.write_text(toml.read_text().replace('memory = "256m"', 'memory = "0.4"'))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(program.root),
         "--folder", str(program.root.parent / "variant")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "resources.memory" in done.stderr and "Traceback" not in done.stderr


# --- the runner: the folder changed after loading; limits the engine cannot give --------------

def test_a_data_folder_swapped_for_a_host_link_after_loading_is_refused_by_the_runner(
        runner, docker_client, program, tmp_path):
    _replace_with_link(program.root / "data/train", tmp_path / "outside")
    _refused_by_runner(runner, docker_client, program, tmp_path / "variant",
                       r"data\.train .*outside")


def test_a_program_file_linked_out_after_loading_never_reaches_an_image(
        runner, docker_client, program, tmp_path):
    (program.root / "helper.py").symlink_to(tmp_path / "outside" / "secret.txt")
    _refused_by_runner(runner, docker_client, program, tmp_path / "variant",
                       "'helper.py' is a symlink")


@pytest.mark.parametrize("change", [{"cpus": 10_000 / 100}, {"memory": "4m"}])
def test_resources_past_the_engine_are_refused_by_the_runner_not_retried(
        runner, docker_client, program, tmp_path, change):
    """A program built without ``Program.load`` (another host's manifest, a test) still meets the
    engine's limits before any container: no three attempts, no ``infra_error``."""
    resources = program.manifest.resources.model_copy(update=change)
    wild = Program(program.root, program.manifest.model_copy(update={"resources": resources}))
    _refused_by_runner(runner, docker_client, wild, tmp_path / "variant", "resources\\.")
    assert not (tmp_path / "variant" / "result.json").exists()


def test_links_inside_the_train_folder_lead_nowhere_in_the_container(hostile, tmp_path):
    """Links inside the data folder that stay inside the program are kept; in the container they
    resolve against the container's files, where neither the held-out folder nor the host
    exists. /data is one read-only mount with nothing mounted under it."""
    out = hostile("""
        from pathlib import Path
        import os
        for name in ("up", "abs"):
            path = Path("/data") / name
            try:
                found = sorted(os.listdir(path)) if path.is_dir() else path.read_text()[:200]
                print("LEAK followed", name, found)
            except OSError as exc:
                print("DEAD", name, exc.strerror)
        mounts = [li.split() for li in open("/proc/self/mountinfo")]
        data = [m for m in mounts if m[4] == "/data" or m[4].startswith("/data/")]
        print("DATA MOUNTS", [(m[4], m[5].split(",")[0]) for m in data])
        try:
            open("/data/new.txt", "w").write("x")
            print("LEAK wrote into /data")
        except OSError as exc:
            print("READ ONLY", exc.strerror)
    """, prepare=lambda root: _links_in_train(root, tmp_path))
    assert out.result.status is Status.OK
    assert out.log().count("DEAD") == 2
    assert "DATA MOUNTS [('/data', 'ro')]" in out.log()


def _links_in_train(root: Path, tmp_path: Path) -> None:
    train = root / "data" / "train"
    (train / "up").symlink_to("../heldout")
    (train / "abs").symlink_to(root / "data" / "heldout" / "y.txt")


@contextlib.contextmanager
def _tmpfs_at(inner: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``inner`` (made here) while the block runs."""
    inner.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(inner)],
                      capture_output=True).returncode != 0:
        pytest.skip("this host does not let the test mount a tmpfs")
    try:
        yield inner
    finally:
        subprocess.run(["umount", str(inner)], check=True)


def test_a_file_system_mounted_inside_a_data_folder_is_refused(program):
    with _tmpfs_at(program.root / "data" / "train" / "mnt"), \
            pytest.raises(ConfigError, match="another file system mounted inside it"):
        Program.load(program.root)
    assert Program.load(program.root).name == "hostile"


def test_a_file_system_mounted_in_a_data_folder_after_loading_stays_out_of_the_container(
        runner, docker_client, tmp_path):
    """The load-time check cannot see the future: the mount itself is non-recursive, so a file
    system mounted under the data folder later is an empty folder inside the container."""
    program = make_program(tmp_path / "program", """
        from pathlib import Path
        inner = Path("/data/mnt")
        seen = sorted(os.listdir(inner)) if inner.is_dir() else None
        print("INNER", seen)
        if seen:
            print("LEAK saw the submount", seen)
        mounts = [li.split()[4] for li in open("/proc/self/mountinfo")]
        print("UNDER DATA", [m for m in mounts if m.startswith("/data/")])
    """)
    with _tmpfs_at(program.root / "data" / "train" / "mnt") as inner:
        (inner / "host-only.txt").write_text(HOST_SECRET)
        run_id = f"manifest-submount-{uuid.uuid4().hex[:6]}"
        result = runner.run(RunRequest(variant=Variant(program, program.source_files()),
                                       run_id=run_id, folder=tmp_path / "variant"))
    log = (tmp_path / "variant" / "train.log").read_text()
    assert result.status is Status.OK, (result.error, log[-2000:])
    assert "INNER []" in log and "UNDER DATA []" in log and "LEAK" not in log
    _nothing_left(docker_client, run_id)
