"""What crosses the cluster as bytes: content-addressed program trees, and variant folders that
the head re-checks as it checks artifacts (a node's reply is bytes, hostile until shown not)."""

from __future__ import annotations

import io
import tarfile

import pytest

from orchestrator.cluster.transfer import pack_folder, pack_tree, unpack_folder, unpack_tree
from orchestrator.errors import InfraError


def test_a_program_tree_is_named_by_its_content_and_unpacks_once(tmp_path):
    root = tmp_path / "prog"
    (root / "data" / "train").mkdir(parents=True)
    (root / "train.py").write_text("print(1)\n")
    (root / "data" / "train" / "x.txt").write_text("x")
    first, again = pack_tree(root), pack_tree(root)
    assert first.sha256 == again.sha256 and first.data == again.data
    (root / "train.py").write_text("print(2)\n")
    assert pack_tree(root).sha256 != first.sha256
    cache = tmp_path / "cache"
    where = unpack_tree(first.data, first.sha256, cache)
    assert (where / "train.py").read_text() == "print(1)\n"
    assert (where / "data" / "train" / "x.txt").read_text() == "x"
    assert unpack_tree(b"not even a tar", first.sha256, cache) == where  # cached: not re-read


def test_a_damaged_program_tree_is_refused(tmp_path):
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "a.py").write_text("a = 1\n")
    tree = pack_tree(tmp_path / "prog")
    with pytest.raises(InfraError, match="damaged"):
        unpack_tree(tree.data[:-1] + b"!", tree.sha256, tmp_path / "cache")
    assert not (tmp_path / "cache" / "programs" / tree.sha256).exists()


def _hostile_reply() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data))
        add("folder/result.json", b"{}")
        add("folder/artifacts/model.bin", b"weights")
        add("folder/artifacts/passwd", kind=tarfile.SYMTYPE, link="/etc/passwd")
        add("folder/../../escaped", b"out")
        add("/abs", b"out")
        add("folder/evil\nname", b"x")
    return buffer.getvalue()


def test_a_returned_folder_is_checked_like_artifacts_and_keeps_what_the_head_wrote(tmp_path):
    dest = tmp_path / "variants" / "0001-abc" / "eval-0"
    (dest / "source").mkdir(parents=True)
    (dest / "source" / "train.py").write_text("kept")
    problems = unpack_folder(_hostile_reply(), dest, cap_bytes=1 << 20)
    assert (dest / "result.json").read_text() == "{}"
    assert (dest / "artifacts" / "model.bin").read_bytes() == b"weights"
    assert (dest / "source" / "train.py").read_text() == "kept"
    assert not (dest / "artifacts" / "passwd").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "variants" / "escaped").exists()
    assert len(problems) >= 3, problems
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")], "staging was left"


def test_a_folder_over_its_cap_is_sent_without_what_does_not_fit(tmp_path):
    folder = tmp_path / "f"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "result.json").write_text("{}")
    (folder / "artifacts" / "big.bin").write_bytes(b"x" * 10_000)
    dest = tmp_path / "back"
    unpack_folder(pack_folder(folder, cap_bytes=1_000), dest, cap_bytes=1 << 20)
    assert (dest / "result.json").is_file() and not (dest / "artifacts" / "big.bin").exists()
