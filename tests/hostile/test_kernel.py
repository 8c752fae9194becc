"""The kernel surface a variant sees: selfprog's seccomp profile, probed from inside a real TRAIN
container with raw system calls (ctypes), so no library can hide a refusal.

Many of these calls would succeed for an unprivileged process without the profile (io_uring,
``AF_VSOCK``/``AF_NETLINK``/``AF_ALG`` sockets, user namespaces, the key calls, ``ptrace`` of
itself, ``personality(READ_IMPLIES_EXEC)``): their refusal is the profile's doing, not the dropped
capabilities'. ``clone3`` answering ``ENOSYS`` is the profile's own signature.
"""

from __future__ import annotations

import json
import platform

import pytest

from orchestrator.containers import seccomp
from orchestrator.result import Status

EPERM, ENOSYS = 1, 38

# x86-64 numbers; the probe runs on the host's architecture, which the profile names
PROBES = """
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
buf = ctypes.create_string_buffer(4096)
addr = ctypes.addressof(buf)

def call(nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    err = ctypes.get_errno()
    if rc == 0 and nr in (56, 435):   # a clone that worked: this is the child
        os._exit(0)
    return [rc, err if rc == -1 else 0]

out = {
    "io_uring_setup": call(425, 4, addr), "io_uring_enter": call(426, 0, 0, 0, 0, 0, 0),
    "io_uring_register": call(427, 0, 0, 0, 0), "bpf": call(321, 0, addr, 128),
    "userfaultfd": call(323, 1), "perf_event_open": call(298, addr, 0, -1, -1, 0),
    "keyctl": call(250, 0, -3, 0), "add_key": call(248, 0, 0, 0, 0, 0),
    "request_key": call(249, 0, 0, 0, 0), "kexec_load": call(246, 0, 0, 0, 0),
    "mount": call(165, 0, 0, 0, 0, 0), "umount2": call(166, 0, 0),
    "pivot_root": call(155, 0, 0), "chroot": call(161, 0),
    "unshare_user": call(272, 0x10000000), "unshare_net": call(272, 0x40000000),
    "setns": call(308, 0, 0), "clone_newuser": call(56, 0x10000000 | 17, 0, 0, 0, 0),
    "clone3": call(435, addr, 88), "ptrace_traceme": call(101, 0, 0, 0, 0),
    "process_vm_readv": call(310, os.getpid(), 0, 0, 0, 0, 0),
    "kcmp": call(312, os.getpid(), os.getpid(), 0, 0, 0),
    "personality_exec": call(135, 0x0400000), "name_to_handle_at": call(303, -100, 0, 0, 0, 0),
    "open_by_handle_at": call(304, -100, 0, 0), "fsopen": call(430, 0, 0),
    "open_tree": call(428, -100, 0, 0), "syslog": call(103, 3, addr, 16),
    "modify_ldt": call(154, 0, addr, 16), "iopl": call(172, 3), "ioperm": call(173, 0, 1, 1),
    "acct": call(163, 0), "swapon": call(167, 0, 0), "sethostname": call(170, addr, 1),
    "settimeofday": call(164, 0, 0), "quotactl": call(179, 0, 0, 0, 0),
    "init_module": call(175, 0, 0, 0), "finit_module": call(313, -1, 0, 0),
}
for name, family in (("vsock", 40), ("netlink", 16), ("packet", 17), ("alg", 38),
                     ("bluetooth", 31), ("key", 15), ("tipc", 30), ("rds", 21), ("xdp", 44),
                     ("can", 29), ("llc", 26), ("smc", 43)):
    out["socket_" + name] = call(41, family, 2, 0)
    out["socketpair_" + name] = call(53, family, 1, 0, addr)
# what a training program needs still works
allowed = {
    "personality_query": call(135, 0xFFFFFFFF)[1] == 0,
    "socket_unix": socket.socket(socket.AF_UNIX).close() is None,
    "socket_inet": socket.socket(socket.AF_INET).close() is None,
    "socket_inet6": socket.socket(socket.AF_INET6).close() is None,
    "socketpair_unix": len(socket.socketpair()) == 2,
    "fork": os.waitpid(os.fork() or os._exit(0), 0)[1] == 0,
}
status = open("/proc/self/status").read()
allowed["filter_on"] = "Seccomp:\\t2" in status
print("PROBES " + json.dumps({"refused": out, "allowed": allowed}))
"""


def _probes(out) -> dict:
    line = next(li for li in out.log().splitlines() if "PROBES " in li)
    return json.loads(line.split("PROBES ", 1)[1])


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the probes use x86-64 call numbers")
def test_dangerous_system_calls_and_socket_families_are_refused_in_train(hostile):
    out = hostile(PROBES)
    assert out.result.status is Status.OK, (out.result.error, out.log()[-2000:])
    found = _probes(out)
    assert all(found["allowed"].values()), found["allowed"]
    refused = found["refused"]
    worked = {name: rc for name, rc in refused.items() if rc[0] != -1}
    assert worked == {}, f"calls a variant could make: {worked}"
    assert refused["clone3"] == [-1, ENOSYS], "clone3 answers ENOSYS so the C library falls back"
    wrong = {name: rc for name, rc in refused.items() if rc[1] not in (EPERM, ENOSYS)}
    assert wrong == {}, f"refused by something other than the profile: {wrong}"


# --- the profile as data: no container needed --------------------------------------------------

def test_the_profile_denies_by_default_and_never_allows_a_denied_call():
    profile = seccomp.profile("x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"], "no 32-bit or x32 entry points"
    unconditional = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
                     and not rule["args"] for n in rule["names"]}
    assert "read" in unconditional and "mmap" in unconditional and "futex" in unconditional
    assert unconditional & seccomp.DENIED == set()
    assert not any(n.startswith("io_uring") for n in unconditional)


def test_sockets_are_allowed_only_for_unix_and_inet_families():
    profile = seccomp.profile("aarch64")
    assert profile["architectures"] == ["SCMP_ARCH_AARCH64"]
    families = {(rule["names"][0], rule["args"][0]["value"]) for rule in profile["syscalls"]
                if rule["names"][0] in ("socket", "socketpair")}
    assert families == {(c, f) for c in ("socket", "socketpair") for f in (1, 2, 10)}
    clone = next(r for r in profile["syscalls"] if r["names"] == ["clone"])
    assert clone["args"] == [{"index": 0, "value": seccomp.NAMESPACE_FLAGS, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}]


def test_every_container_gets_the_profile():
    from orchestrator.containers import hardening as hard
    from orchestrator.program import ResourcesSection

    kwargs = hard.create_kwargs(ResourcesSection(), hard.Hardening(), cpus=1, env={}, mounts=[])
    opts = kwargs["host_config"]["security_opt"]
    assert "no-new-privileges" in opts
    inline = next(o for o in opts if o.startswith("seccomp="))
    assert json.loads(inline.removeprefix("seccomp=")) == seccomp.profile()
    with pytest.raises(ValueError, match="architecture"):
        seccomp.profile("mips")
