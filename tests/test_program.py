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
