"""Landlock through ctypes: a process gives up the filesystem beyond a short allow-list, for good.

    abi = restrict(read=["/opt/venv", "/out"], write=[])   # 0 where the kernel lacks Landlock

After :func:`restrict` succeeds the calling thread (and every process it starts) may read only
beneath ``read`` (and ``write``), write only beneath ``write``, make no TCP connection or bind
(ABI 4+), signal nothing and reach no abstract unix socket outside its own domain (ABI 6+), and
trace no process outside it. Nothing can lift the restriction; a second call only narrows it.

Where the kernel has no Landlock (or a seccomp profile refuses its system calls) ``restrict``
returns 0 and changes nothing: the caller logs a warning and relies on the container's isolation.
Only the standard library is used here.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Iterable

_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
"""landlock_create_ruleset, landlock_add_rule, landlock_restrict_self."""
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""Rights that apply to a file; a rule on a file may grant only these."""
_READ = EXECUTE | READ_FILE | READ_DIR
_NET_ALL = 1 | 2  # BIND_TCP, CONNECT_TCP (ABI 4)
_SCOPE_ALL = 1 | 2  # ABSTRACT_UNIX_SOCKET, SIGNAL (ABI 6)


class LandlockError(OSError):
    """The kernel has Landlock but refused a rule or the restriction itself."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (or a filter refuses the call)."""
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return 0
    version = _libc().syscall(ctypes.c_long(numbers[0]), None, ctypes.c_size_t(0),
                              ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return int(version) if version > 0 else 0


def handled_fs(abi: int) -> int:
    """Every filesystem right the given ABI knows (all of them are denied unless granted)."""
    rights = _ABI1_ALL
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def restrict(read: Iterable[str], write: Iterable[str] = ()) -> int:
    """Restrict this process (and its future children) to reading ``read`` and writing ``write``.

    Paths that do not exist are skipped. A path in ``write`` gets every right (read, write,
    execute, device ioctls: a GPU's ``/dev/nvidia*`` needs them).

    Returns:
        The Landlock ABI version now enforced, or 0 where the kernel has no Landlock (nothing
        was changed).

    Raises:
        LandlockError: the kernel has Landlock but refused the ruleset, a rule or the restriction.
    """
    abi = abi_version()
    if abi == 0:
        return 0
    create, add_rule, restrict_self = _SYSCALLS[platform.machine()]
    libc = _libc()
    fs = handled_fs(abi)
    fields = [fs]
    if abi >= 4:
        fields.append(_NET_ALL)
    if abi >= 6:
        fields.append(_SCOPE_ALL)
    attr = ctypes.create_string_buffer(struct.pack(f"<{len(fields)}Q", *fields))
    ruleset = libc.syscall(ctypes.c_long(create), attr, ctypes.c_size_t(len(attr.raw)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for paths, rights in ((read, _READ), (write, fs)):
            for path in paths:
                _allow(libc, add_rule, int(ruleset), path, rights & fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(ctypes.c_long(restrict_self), ctypes.c_int(ruleset),
                        ctypes.c_uint32(0)) != 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(int(ruleset))
    return abi


def _allow(libc: ctypes.CDLL, add_rule: int, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_ONLY
        rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd))
        if libc.syscall(ctypes.c_long(add_rule), ctypes.c_int(ruleset),
                        ctypes.c_int(_RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)) != 0:
            raise _error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def _error(call: str) -> LandlockError:
    errno = ctypes.get_errno()
    return LandlockError(errno, f"{call} failed: {os.strerror(errno)}")
