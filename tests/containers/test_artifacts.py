"""Copying artifacts out: only regular files with plain names, under the caps."""

from __future__ import annotations

import io
import tarfile

import pytest

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


def tar_raw(*members: tarfile.TarInfo | tuple[str, bytes]) -> list[bytes]:
    """A GNU tar stream of regular files ``(name, data)`` and ready-made headers (hard links);
    names may carry any byte (written back with ``surrogateescape``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT,
                      errors="surrogateescape") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            info = tarfile.TarInfo(member[0])
            info.size = len(member[1])
            tar.addfile(info, io.BytesIO(member[1]))
    raw = buffer.getvalue()
    return [raw[i:i + 512] for i in range(0, len(raw), 512)]


def hard_link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


@pytest.mark.parametrize("name", [
    "a\nb", "fake\rok.txt", "tab\there", "\x1b[2J\x1b[31mred", "bell\x07", "del\x7f",
    "c1\x9b31m", "evil\u202etxt.exe", "zero\u200bwidth", "line\u2028sep",
    b"bad-\xff\xfe-utf8".decode("utf-8", "surrogateescape"),
    "dir\n/inner.txt",
])
def test_names_with_control_characters_or_invalid_utf8_are_refused_and_quoted_safely(
        tmp_path, name):
    dest = tmp_path / "artifacts"
    dest.mkdir()
    report = extract(tar_raw(("out/good.txt", b"ok"), (f"out/{name}", b"x")), dest, 1000)
    assert sorted(p.name for p in dest.iterdir()) == ["good.txt"]
    assert report.files == 1 and len(report.problems) == 1
    problem = report.problems[0]
    assert "control characters or invalid UTF-8" in problem
    assert problem.isascii() and problem.isprintable(), "the record itself is plain text"


def test_printable_unicode_names_are_kept(tmp_path):
    report = extract(tar_raw(("out/résumé ü 模型.txt", b"u")), tmp_path, 1000)
    assert (tmp_path / "résumé ü 模型.txt").read_bytes() == b"u" and not report.problems


def test_a_hard_link_is_copied_as_its_own_regular_file_and_counted(tmp_path):
    report = extract(tar_raw(("out/model.pt", b"w" * 100), hard_link("out/copy.pt", "out/model.pt"),
                             hard_link("out/sub/again.pt", "out/model.pt")), tmp_path, 1000)
    assert not report.problems
    assert report.files == 3 and report.bytes == 300
    for name in ("model.pt", "copy.pt", "sub/again.pt"):
        assert (tmp_path / name).read_bytes() == b"w" * 100
        assert (tmp_path / name).stat().st_nlink == 1 and not (tmp_path / name).is_symlink()
    (tmp_path / "copy.pt").write_bytes(b"changed")
    assert (tmp_path / "model.pt").read_bytes() == b"w" * 100, "copies, never links"


def test_hard_links_count_against_the_byte_cap_and_dangling_ones_are_problems(tmp_path):
    report = extract(tar_raw(("out/a", b"a" * 600), hard_link("out/b", "out/a"),
                             hard_link("out/c", "out/never-copied"),
                             hard_link("out/d", "/etc/passwd")), tmp_path, 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert report.bytes == 600
    assert any("over the caps" in p and "'out/b'" in p for p in report.problems)
    assert sum("to a file not copied" in p for p in report.problems) == 2


@pytest.mark.docker
def test_a_real_train_stage_leaves_only_plain_names_and_hard_links_as_files(
        docker_client, runtime_image, tmp_path):
    """Through the real runner: what a variant writes under /out reaches the host folder only
    with plain names; a hard link arrives as its own regular file."""
    import uuid

    from orchestrator.containers.docker_runner import DockerRunner
    from orchestrator.result import Status
    from orchestrator.runner import RunRequest, Variant
    from tests.hostile.kit import make_program

    program = make_program(tmp_path / "program", """
        names = ["new\\nline.txt", "car\\rriage.txt", "tab\\t.txt", "\\x1b[2J\\x1b[31mred.txt",
                 "rtl\\u202eexe.txt"]
        for name in names:
            (OUT / name).write_text("x")
        os.makedirs(OUT / "sub\\x07dir", exist_ok=True)
        (OUT / "sub\\x07dir" / "inner.txt").write_text("x")
        open(os.path.join(os.fsencode(OUT), b"bad-\\xff.txt"), "w").write("x")
        os.link(OUT / "answer.txt", OUT / "hard.txt")
        (OUT / "ok ü.txt").write_text("fine")
    """)
    runner = DockerRunner(docker_client, grace_s=1.0, linger_s=30, runtime={"cpu": runtime_image})
    folder = tmp_path / "variant"
    result = runner.run(RunRequest(variant=Variant(program, program.source_files()),
                                   run_id=f"artifacts-{uuid.uuid4().hex[:8]}", folder=folder))
    assert result.status is Status.OK, result.error
    artifacts = folder / "artifacts"
    assert sorted(p.name for p in artifacts.iterdir()) == ["answer.txt", "hard.txt", "ok ü.txt"]
    assert (artifacts / "hard.txt").read_text() == "42"
    assert (artifacts / "hard.txt").stat().st_nlink == 1
    problems = [v for v in result.stages[0].violations if "control characters" in v]
    assert len(problems) == 8, result.stages[0].violations
    assert all(p.isascii() and p.isprintable() for p in result.stages[0].violations)
