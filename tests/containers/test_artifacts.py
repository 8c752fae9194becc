"""Copying artifacts out: only regular files with plain names, under the caps."""

from __future__ import annotations

import io
import tarfile

from orchestrator.containers.artifacts import MAX_FILES, MAX_PROBLEMS, extract


def tar_stream(*members: tuple[str, bytes | None, bytes]) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link, data in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link.decode()
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if link is None else None)
    raw = buffer.getvalue()
    return [raw[i:i + 1000] for i in range(0, len(raw), 1000)]


def test_regular_files_are_copied(tmp_path):
    report = extract(tar_stream(("out/model.pt", None, b"w" * 10), ("out/sub/a", None, b"a")),
                     tmp_path, 1000)
    assert (tmp_path / "model.pt").read_bytes() == b"w" * 10 and (tmp_path / "sub/a").exists()
    assert report.files == 2 and not report.problems


def test_links_and_climbing_names_are_skipped(tmp_path):
    report = extract(tar_stream(("out/link", b"/etc/passwd", b""), ("out/../evil", None, b"x")),
                     tmp_path, 1000)
    assert list(tmp_path.iterdir()) == [] and len(report.problems) == 2
    assert not (tmp_path.parent / "evil").exists()


def test_files_over_the_cap_are_skipped(tmp_path):
    report = extract(tar_stream(("out/small", None, b"s" * 10), ("out/big", None, b"b" * 5000)),
                     tmp_path, 1000)
    assert (tmp_path / "small").exists() and not (tmp_path / "big").exists()
    assert report.problems


def tar_of(*members: tuple[str, bytes | None]) -> list[bytes]:
    """A tar stream of folders (data None) and regular files, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buffer.getvalue()
    return [raw[i:i + 4096] for i in range(0, len(raw), 4096)]


def everything_under(path):
    return set(path.rglob("*"))


def test_a_folder_chain_too_long_for_the_host_is_a_problem_not_an_exception(tmp_path):
    dest = tmp_path / "artifacts"
    dest.mkdir()
    chain = "/".join(["d" * 200] * 20)  # ~4,000 characters: over the host's PATH_MAX with dest
    report = extract(tar_of(("out/ok", b"fine"), (f"out/{chain}", None),
                            (f"out/{chain}/model.pt", b"w")), dest, 1000)
    assert any("not copied" in p for p in report.problems)
    assert (dest / "ok").read_bytes() == b"fine"
    assert [p.name for p in tmp_path.iterdir()] == ["artifacts"]  # nothing beside the target


def test_a_file_and_folder_of_the_same_name_is_a_problem_not_an_exception(tmp_path):
    report = extract(tar_of(("out/a", b"file"), ("out/a", None), ("out/a/b", b"under a file"),
                            ("out/c", None), ("out/c", b"file over a folder")), tmp_path, 1000)
    assert (tmp_path / "a").read_bytes() == b"file" and (tmp_path / "c").is_dir()
    assert len([p for p in report.problems if "not copied" in p]) == 3
    assert everything_under(tmp_path) == {tmp_path / "a", tmp_path / "c"}


def test_folders_count_against_the_entry_cap(tmp_path):
    many = MAX_FILES + 500
    report = extract(tar_of(*[(f"out/e{i}", None) for i in range(many)]), tmp_path, 1000)
    assert len(list(tmp_path.iterdir())) == MAX_FILES == report.entries
    assert any("over the caps" in p for p in report.problems)
    assert len(report.problems) == MAX_PROBLEMS + 1
    assert report.problems[-1] == f"({500 - MAX_PROBLEMS} more artifact problems, not kept)"


def test_parent_folders_of_a_deep_file_count_against_the_entry_cap(tmp_path):
    deep = "/".join(["p"] * (MAX_FILES + 1))
    report = extract(tar_of((f"out/{deep}/f", b"x"), ("out/g", b"y")), tmp_path, 1000)
    assert everything_under(tmp_path) == {tmp_path / "g"}
    assert any("over the caps" in p for p in report.problems)
