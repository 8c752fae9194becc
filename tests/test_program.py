"""The program manifest: a good one loads, and each kind of mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.program import Program, parse_size, variant_hash

GOOD = """
[program]
name = "demo"
entrypoint = "train.py"
evaluator = "evaluate.py"
editable = ["train.py"]

[metric]
name = "loss"
goal = "minimize"

[resources]
cpus = 1.5
memory = "512m"
timeout_s = 30

[data]
train = "data/train"
heldout = "data/heldout"
"""


def make_program(root: Path, manifest: str = GOOD) -> Path:
    (root / "data/train").mkdir(parents=True)
    (root / "data/heldout").mkdir(parents=True)
    (root / "train.py").write_text("LR = 0.1\n")
    (root / "evaluate.py").write_text("print('eval')\n")
    (root / "data/train/a.txt").write_text("train")
    (root / "program.toml").write_text(manifest)
    return root


def test_a_good_manifest_loads(tmp_path):
    program = Program.load(make_program(tmp_path))
    assert program.name == "demo"
    assert program.manifest.resources.memory_bytes == 512 * 1024**2
    assert program.manifest.resources.budget_s(on_gpu=False) == pytest.approx(24.0)
    assert program.source_files() == {"train.py": "LR = 0.1\n"}
    # data never goes into a variant's image
    assert program.code_files() == ["evaluate.py", "program.toml", "train.py"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('goal = "minimize"', 'goal = "minimise"'), "metric.goal"),
        (("timeout_s = 30", "timout_s = 30"), "unknown key 'resources.timout_s'"),
        (('memory = "512m"', 'memory = "lots"'), "resources.memory"),
        (('editable = ["train.py"]', 'editable = ["../etc/passwd"]'), "program.editable"),
        (('editable = ["train.py"]', 'editable = ["evaluate.py"]'), "cannot be editable"),
        (('entrypoint = "train.py"', 'entrypoint = "missing.py"'), "'missing.py' is named"),
        (('heldout = "data/heldout"', 'heldout = "/data/heldout"'), "data.heldout"),
        (("[metric]", "[metric\n"), "not valid TOML"),
    ],
)
def test_mistakes_fail_at_once_naming_the_key(tmp_path, change, named):
    make_program(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace(".", r"\.")):
        Program.load(tmp_path)


def test_a_folder_without_manifest_is_not_a_program(tmp_path):
    with pytest.raises(ConfigError, match="has no program.toml"):
        Program.load(tmp_path)


def test_sizes_parse_and_garbage_does_not():
    assert parse_size("4g") == 4 * 1024**3
    assert parse_size("1.5M") == int(1.5 * 1024**2)
    with pytest.raises(ValueError):
        parse_size("-1g")


def test_variant_hash_is_stable_and_sees_every_byte():
    a = variant_hash({"train.py": "x = 1\n", "model.py": "y = 2\n"})
    assert a == variant_hash({"model.py": "y = 2\n", "train.py": "x = 1\n"})
    assert a != variant_hash({"train.py": "x = 1\n", "model.py": "y = 3\n"})
    # a file boundary cannot be moved without changing the hash
    assert variant_hash({"a": "xy", "b": ""}) != variant_hash({"a": "x", "b": "y"})


def test_the_whole_data_tree_stays_out_of_the_image_not_only_the_data_folders(tmp_path):
    root = make_program(tmp_path)
    (root / "data/corpus.json").write_text('{"heldout": ["secret.py"]}')
    (root / "data/heldout/corpus.txt.xz").write_bytes(b"held out")
    assert Program.load(root).code_files() == ["evaluate.py", "program.toml", "train.py"]


def test_data_folders_at_the_root_exclude_only_themselves(tmp_path):
    root = make_program(tmp_path, GOOD.replace('"data/train"', '"train_data"')
                        .replace('"data/heldout"', '"heldout_data"'))
    (root / "train_data").mkdir()
    (root / "heldout_data").mkdir()
    (root / "train_data/a.txt").write_text("train")
    (root / "notes.md").write_text("kept")
    assert Program.load(root).code_files() == ["data/train/a.txt", "evaluate.py", "notes.md",
                                               "program.toml", "train.py"]


# --- paths that lead out, overlapping data, resources the host cannot give ---------------------

def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.py").write_text("SECRET = 1\n")
    return out


@pytest.mark.parametrize("key", ["train", "heldout"])
def test_a_data_folder_symlinked_out_of_the_program_is_refused_naming_the_key(tmp_path, key):
    root = make_program(tmp_path / "p")
    folder = root / "data" / key
    for child in folder.iterdir():
        child.unlink()
    folder.rmdir()
    folder.symlink_to("/")
    with pytest.raises(ConfigError, match=rf"data\.{key} .*outside"):
        Program.load(root)


@pytest.mark.parametrize(
    ("train", "heldout"),
    [("data/train", "data/train"), ("data", "data/heldout"), ("data/train", "data"),
     ("data/train/.", "data/train")],
)
def test_train_and_heldout_folders_must_not_overlap(tmp_path, train, heldout):
    root = make_program(tmp_path, GOOD.replace('"data/train"', f'"{train}"')
                        .replace('"data/heldout"', f'"{heldout}"'))
    with pytest.raises(ConfigError, match="overlap"):
        Program.load(root)


def test_a_train_folder_that_is_a_symlink_to_heldout_overlaps(tmp_path):
    root = make_program(tmp_path)
    (root / "data/train/a.txt").unlink()
    (root / "data/train").rmdir()
    (root / "data/train").symlink_to("heldout")
    with pytest.raises(ConfigError, match="overlap"):
        Program.load(root)


def test_a_data_folder_that_is_a_file_or_the_whole_program_is_refused(tmp_path):
    root = make_program(tmp_path, GOOD.replace('"data/train"', '"train.py"'))
    with pytest.raises(ConfigError, match=r"data\.train 'train.py' is not a folder"):
        Program.load(root)
    (root / "program.toml").write_text(GOOD.replace('"data/train"', '"."'))
    with pytest.raises(ConfigError, match="data.train '.' is the whole program folder"):
        Program.load(root)


@pytest.mark.parametrize("key", ["entrypoint", "evaluator", "editable"])
def test_a_named_file_symlinked_out_is_refused_naming_the_key(tmp_path, key):
    outside = _outside(tmp_path)
    root = make_program(tmp_path / "p", GOOD.replace('editable = ["train.py"]',
                                                     'editable = ["train.py", "model.py"]'))
    (root / "model.py").write_text("x = 1\n")
    target = {"entrypoint": "train.py", "evaluator": "evaluate.py", "editable": "model.py"}[key]
    (root / target).unlink()
    (root / target).symlink_to(outside / "secret.py")
    with pytest.raises(ConfigError, match=rf"program\.{key} '{target}' leads to .*outside"):
        Program.load(root)


@pytest.mark.parametrize("link", ["helper.py", "lib"])
def test_any_file_of_the_image_symlinked_out_is_refused(tmp_path, link):
    outside = _outside(tmp_path)
    root = make_program(tmp_path / "p")
    (root / link).symlink_to(outside / "secret.py" if link.endswith(".py") else outside)
    with pytest.raises(ConfigError, match=f"'{link}' is a symlink to .*outside"):
        Program.load(root)


def test_a_symlink_inside_the_program_is_fine_and_ships_its_target(tmp_path):
    root = make_program(tmp_path)
    (root / "common.py").write_text("C = 1\n")
    (root / "alias.py").symlink_to("common.py")
    program = Program.load(root)
    assert "alias.py" in program.code_files()
    assert program.data_path("train") == (root / "data/train").resolve()
    assert program.data_path("eval") == (root / "data/heldout").resolve()


def test_a_data_folder_swapped_for_a_symlink_after_loading_is_refused_at_mount_time(tmp_path):
    _outside(tmp_path)
    root = make_program(tmp_path / "p")
    program = Program.load(root)
    (root / "data/train/a.txt").unlink()
    (root / "data/train").rmdir()
    (root / "data/train").symlink_to(tmp_path / "outside")
    with pytest.raises(ConfigError, match="data.train .*outside"):
        program.data_path("train")


def test_a_manifest_symlinked_from_outside_is_refused(tmp_path):
    root = make_program(tmp_path / "p")
    (tmp_path / "elsewhere.toml").write_text(GOOD)
    (root / "program.toml").unlink()
    (root / "program.toml").symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(ConfigError, match="symlink .*outside the program folder"):
        Program.load(root)


@pytest.mark.parametrize(
    ("line", "named"),
    [('memory = "0"', "resources.memory"), ('memory = "0.4"', "resources.memory"),
     ('memory = "63m"', "resources.memory"), ('memory = "100000g"', "resources.memory"),
     ('disk = "0"', "resources.disk"), ('disk = "100000g"', "resources.disk"),
     ("cpus = 0", "resources.cpus"), ("cpus = 0.001", "resources.cpus"),
     ("cpus = -1", "resources.cpus"), ("cpus = nan", "resources.cpus"),
     ("cpus = inf", "resources.cpus"), ("cpus = 200", "resources.cpus"),
     ("pids = 0", "resources.pids"), ("timeout_s = 0", "resources.timeout_s")],
)
def test_resources_outside_the_floors_or_the_host_are_refused(tmp_path, line, named):
    key = line.split(" =")[0]
    kept = [old for old in GOOD.splitlines() if not old.startswith(f"{key} =")]
    at = kept.index("[resources]") + 1
    root = make_program(tmp_path, "\n".join(kept[:at] + [line] + kept[at:]))
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        Program.load(root)


def test_cpus_past_the_hosts_cores_are_refused_and_the_hosts_own_count_is_fine(tmp_path):
    import os
    cores = os.cpu_count() or 1
    root = make_program(tmp_path, GOOD.replace("cpus = 1.5", f"cpus = {cores}"))
    assert Program.load(root).manifest.resources.cpus == cores
    (root / "program.toml").write_text(GOOD.replace("cpus = 1.5", f"cpus = {cores + 1}"))
    with pytest.raises(ConfigError, match=rf"resources\.cpus = {cores + 1} but this host has"):
        Program.load(root)


@pytest.mark.parametrize("nest", ["[" * 3000 + "]" * 3000, "{a = " * 3000 + "1" + "}" * 3000])
def test_a_manifest_nested_thousands_deep_is_a_config_error(tmp_path, nest):
    root = make_program(tmp_path, GOOD + f"\n[extra]\nx = {nest}\n")
    with pytest.raises(ConfigError, match="nested too deep|not valid TOML"):
        Program.load(root)


@pytest.mark.parametrize(("key", "line"), [
    ("program.editable", 'editable = ["train.py", "data/heldout/answers.py"]'),
    ("program.editable", 'editable = ["train.py", "data/train/peek.py"]'),
])
def test_a_program_file_inside_a_data_folder_is_refused(tmp_path, key, line):
    root = make_program(tmp_path, GOOD.replace('editable = ["train.py"]', line))
    (root / "data/heldout/answers.py").write_text("ANSWERS = [1, 2]\n")
    (root / "data/train/peek.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')} .* lies in data\."):
        Program.load(root)


def test_an_entrypoint_linked_into_the_heldout_folder_is_refused(tmp_path):
    root = make_program(tmp_path)
    (root / "data/heldout/labels.py").write_text("LABELS = [0, 1]\n")
    (root / "train.py").unlink()
    (root / "train.py").symlink_to("data/heldout/labels.py")
    with pytest.raises(ConfigError, match="program.entrypoint 'train.py' lies in data.heldout"):
        Program.load(root)


def test_an_engine_smaller_than_the_host_refuses_what_the_host_would_allow():
    from orchestrator.program import ResourcesSection, check_host_fits

    res = ResourcesSection(cpus=2, memory="1g")
    check_host_fits(res, "p", cpus=2, memory=2 * 1024**3)
    with pytest.raises(ConfigError, match=r"resources\.cpus = 2 but this host has 1 CPU"):
        check_host_fits(res, "p", cpus=1, memory=2 * 1024**3)
    with pytest.raises(ConfigError, match=r"resources\.memory = '1g' is more than .* 512 MiB"):
        check_host_fits(res, "p", cpus=2, memory=512 * 1024**2)
    unchecked = ResourcesSection.model_construct(cpus=1.0, memory="4m", disk="1g")
    with pytest.raises(ConfigError, match=r"resources\.memory = '4m' is under the floor of 64m"):
        check_host_fits(unchecked, "p")
