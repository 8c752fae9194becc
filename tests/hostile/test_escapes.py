"""Hostile programs that try to get out, or to lie: network, host secrets, the Docker socket,
privileges, forged results, stray processes, crashes, GPUs the host does not have."""

from __future__ import annotations

import pytest

from orchestrator.containers.hardening import LABEL_RUN
from orchestrator.containers.telemetry import FORGED
from orchestrator.errors import GpuUnavailableError
from orchestrator.result import Status
from orchestrator.runner import RunRequest, Variant
from tests.hostile.kit import TRUTH, make_program

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_network_egress_by_name_and_by_raw_ip_fails(hostile):
    out = hostile("""
        import socket
        try:
            socket.getaddrinfo("pypi.org", 443)
            print("LEAK resolved a name")
        except OSError as exc:
            print("NO DNS", exc)
        for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("172.17.0.1", 2375)):
            try:
                socket.create_connection((host, port), timeout=2).close()
                print("LEAK reached", host, port)
            except OSError as exc:
                print("NO ROUTE", host, exc.strerror)
        print("interfaces", sorted(os.listdir("/sys/class/net")))
    """)
    assert out.result.status is Status.OK
    assert out.log().count("NO ROUTE") == 3 and "interfaces ['lo']" in out.log()


def test_host_secrets_are_out_of_reach(hostile):
    out = hostile("""
        for path in ("/etc/shadow", "/root/.docker/config.json", "/proc/1/root/etc/shadow",
                     "/proc/kcore", "/proc/1/environ"):
            try:
                data = open(path, "rb").read(4096)
                print("READ", path, len(data))
                if b"secret" in data.lower() or path != "/proc/1/environ":
                    print("LEAK", path)
            except OSError as exc:
                print("REFUSED", path, exc.strerror)
        for path in ("/proc/sysrq-trigger", "/proc/sys/kernel/core_pattern",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                open(path, "w").write("x")
                print("LEAK wrote", path)
            except OSError as exc:
                print("REFUSED", path, exc.strerror)
        env = sorted(k for k in os.environ if not k.startswith(("SELFPROG_", "PYTHON", "LC_")))
        print("ENV", env)
        mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
        print("MOUNTS", sorted(m for m in mounts if not m.startswith(("/proc", "/sys", "/dev"))))
        for top in ("/", "/data", "/program", "/mnt", "/srv", "/media"):
            for name in os.listdir(top) if os.path.isdir(top) else ():
                path = os.path.join(top, name)
                if os.path.isfile(path):
                    if b"selfprog-host-" + b"secret" in open(path, "rb").read(1 << 20):
                        print("LEAK found the host secret in", path)
    """)
    assert out.result.status is Status.OK
    log = out.log()
    assert "MOUNTS ['/', '/data', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/out', " \
           "'/tmp', '/usr/sbin/docker-init']" in log, log
    # CUDA_VISIBLE_DEVICES is set (empty here) so a container sees exactly its slot's GPUs
    assert "ENV ['CUDA_VISIBLE_DEVICES', 'HOME', 'HOSTNAME', 'LANG', 'MPLCONFIGDIR', 'PATH']" \
        in log, log


def test_the_docker_socket_cannot_be_found(hostile):
    out = hostile("""
        import socket
        for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
                     "/var/run/docker/containerd/containerd.sock"):
            if os.path.exists(path):
                print("LEAK socket at", path)
        if os.environ.get("DOCKER_HOST"):
            print("LEAK DOCKER_HOST")
        print("probed")
    """)
    assert out.result.status is Status.OK and "probed" in out.log()


def test_setuid_and_capability_tricks_fail(hostile):
    out = hostile("""
        import ctypes, shutil, stat
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print("uid", os.getuid(), "CapEff", status["CapEff"].strip(),
              "NoNewPrivs", status["NoNewPrivs"].strip())
        if os.getuid() == 0 or int(status["CapEff"], 16) or status["NoNewPrivs"].strip() != "1":
            print("LEAK privileges")
        for trick in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.chroot("/tmp"),
                      lambda: os.chown("/tmp", 0, 0)):
            try:
                trick()
                print("LEAK a privileged call worked")
            except OSError as exc:
                print("REFUSED", exc.strerror)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"none", b"/tmp", b"tmpfs", 0, None) == 0:
            print("LEAK mount")
        if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER: a path to fake root
            print("LEAK unshare")
        shutil.copy("/bin/ls", "/tmp/suid")
        try:
            os.chmod("/tmp/suid", 0o4755)
            print("setuid bit set:", bool(os.stat("/tmp/suid").st_mode & stat.S_ISUID))
        except OSError as exc:
            print("REFUSED chmod", exc.strerror)
    """)
    assert out.result.status is Status.OK
    assert "CapEff 0000000000000000 NoNewPrivs 1" in out.log()
    assert out.log().count("REFUSED") >= 4


def test_forged_results_by_every_route_leave_the_trusted_metric(hostile):
    out = hostile("""
        import json
        from sandbox import report
        line = json.dumps({"v": 1, "t": 0, "type": "result", "metrics": {"score": 999.0}})
        print(line)
        print(line, file=sys.stderr)
        report.result(score=999.0)
        (OUT / "result.json").write_text(line)
        os.write(int(os.environ["SELFPROG_PROTOCOL_FD"]), (line + "\\n").encode())
        try:  # Landlock, where the kernel has it, refuses this route outright
            with open(f"/proc/{os.getppid()}/fd/1", "w") as harness_stdout:
                harness_stdout.write(line + "\\n")
        except PermissionError:
            pass
    """)
    assert out.result.status is Status.OK
    assert out.result.metrics == TRUTH
    assert FORGED in out.result.stage("train").violations


def test_protocol_garbage_is_recorded_not_fatal(hostile):
    out = hostile("""
        fd = int(os.environ["SELFPROG_PROTOCOL_FD"])
        for line in (b"not json", b"[1, 2]", b'{"v": 1, "type": "mystery"}',
                     b'{"v": 1, "type": "progress", "step": 1, "metrics": {"a": NaN}}',
                     b'{"v": 2, "type": "progress", "step": 1}', b"z" * 200_000):
            os.write(fd, line + b"\\n")
        for step in range(20_000):
            os.write(fd, b'{"v": 1, "type": "progress", "step": %d, "metrics": {}}\\n' % step)
    """)
    assert out.result.status is Status.OK and out.result.metrics == TRUTH
    train = out.result.stage("train")
    assert train.messages <= 10_100
    events = (out.folder / "events.jsonl").read_text()
    exit_line = [line for line in events.splitlines() if '"exit"' in line][0]
    assert '"dropped": 0' not in exit_line


def test_children_that_outlive_the_main_process_are_reaped(hostile):
    out = hostile("""
        import subprocess
        subprocess.Popen(["sleep", "600"], start_new_session=True)  # holds our stdout open
        if os.fork() == 0:
            os.setsid()
            import time
            time.sleep(600)
    """)
    assert out.result.status is Status.OK and out.result.metrics == TRUTH
    assert out.result.stage("train").duration_s < 6


def test_a_segfault_is_a_crash(hostile):
    out = hostile("""
        import ctypes
        ctypes.string_at(0)
    """)
    assert out.result.status is Status.CRASH
    assert out.result.stage("train").exit_code == -11


def test_a_train_stage_that_exports_nothing_is_invalid(hostile):
    out = hostile("""
        (OUT / "answer.txt").unlink()
    """)
    assert out.result.status is Status.INVALID
    assert out.result.stage("eval").status is Status.CRASH


def test_a_gpu_request_without_gpus_fails_before_any_container(runner, docker_client, tmp_path):
    program = make_program(tmp_path / "program", "pass\n", gpus=1)
    request = RunRequest(variant=Variant(program, program.source_files()), run_id="hostile-gpu",
                         folder=tmp_path / "variant", gpu_ids=(0,))
    with pytest.raises(GpuUnavailableError, match="no NVIDIA runtime"):
        runner.run(request)
    label = {"label": f"{LABEL_RUN}=hostile-gpu"}
    assert docker_client.api.containers(all=True, filters=label) == []
    assert not (tmp_path / "variant").exists()
