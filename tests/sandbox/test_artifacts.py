"""Copying artifacts out: only regular files with plain names, under the caps."""

from __future__ import annotations

import io
import tarfile

from orchestrator.artifacts import extract


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
