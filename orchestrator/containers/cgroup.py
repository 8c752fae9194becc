"""Reading a container's CPU time and peak memory from the host's cgroup files.

The host's view is trusted where the harness's is not: a variant shares its container with the
harness and can lie through it. Reading a file is cheap enough to poll each second, which the
stats API is not. Only a local engine's cgroups are visible; elsewhere the readers return None
and the caller falls back to what it has (the wall-clock deadline, the harness's figure).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _first(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def cpu_seconds(container_id: str, root: Path = ROOT) -> float | None:
    """CPU time used by every process of the container so far, in seconds."""
    v1 = _first([root / d / "docker" / container_id / "cpuacct.usage"
                 for d in ("cpuacct", "cpu,cpuacct")])
    if v1 is not None:
        nanoseconds = _read_int(v1)
        return nanoseconds / 1e9 if nanoseconds is not None else None
    v2 = _first([root / "system.slice" / f"docker-{container_id}.scope" / "cpu.stat",
                 root / "docker" / container_id / "cpu.stat"])
    if v2 is not None:
        for line in _read(v2).splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec" and value.strip().isdigit():
                return int(value) / 1e6
    return None


def peak_memory_bytes(container_id: str, root: Path = ROOT) -> int | None:
    """Highest memory use of the container so far (cgroup v1, or v2's memory.peak)."""
    path = _first([root / "memory" / "docker" / container_id / "memory.max_usage_in_bytes",
                   root / "system.slice" / f"docker-{container_id}.scope" / "memory.peak",
                   root / "docker" / container_id / "memory.peak"])
    return None if path is None else _read_int(path)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # the container went away between the check and the read
        return ""


def _read_int(path: Path) -> int | None:
    text = _read(path).strip()
    return int(text) if text.isdigit() else None
