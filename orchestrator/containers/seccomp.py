"""selfprog's own seccomp profile: the kernel calls a variant may make, and nothing else.

The engine's default profile is compiled into the engine (not on disk) and differs between engine
versions: Docker 20.10 still allows ``io_uring_setup`` and ``socket(AF_VSOCK)``. So selfprog ships
its own, built here as data and passed inline to every container (``security_opt``):

- default deny (``EPERM``): a call not listed fails, it never kills the process;
- an allowlist of what CPython, NumPy, PyTorch (threads, data-loader workers over ``AF_UNIX``
  and shared memory) and CUDA need: files, memory, signals, time, threads, processes, pipes,
  polling, System V and POSIX IPC, sockets;
- ``socket`` and ``socketpair`` only for ``AF_UNIX``, ``AF_INET`` and ``AF_INET6`` (the network is
  ``none`` anyway): no ``AF_VSOCK``, ``AF_NETLINK``, ``AF_PACKET``, ``AF_ALG``, ``AF_BLUETOOTH``...;
- ``clone`` only without namespace flags, ``clone3`` answers ``ENOSYS`` (its flags sit in memory
  seccomp cannot read; the C library then falls back to ``clone``), ``personality`` only the
  harmless values;
- left out on purpose: ``io_uring_*``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``ptrace``,
  ``process_vm_readv``/``writev``, ``kcmp``, the key calls (``keyctl``, ``add_key``,
  ``request_key``), ``kexec_*``, module loading, ``mount``/``umount2``/``pivot_root``/``chroot``
  and the new mount API, ``unshare``/``setns``, ``open_by_handle_at``, ``quotactl``, ``syslog``,
  ``acct``, ``reboot``, ``swapon``, clock and host-name setters, ``fanotify_init``.

Only the host's own architecture is listed, so 32-bit entry points (``int 0x80``, x32) and their
``socketcall`` multiplexer are refused as a foreign architecture.
"""

from __future__ import annotations

import json
import platform
from functools import cache
from typing import Any

EPERM = 1
ENOSYS = 38
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCKET_FAMILIES = (AF_UNIX, AF_INET, AF_INET6)
"""Address families a variant may open sockets in."""
NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET."""
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
"""PER_LINUX, PER_LINUX32, UNAME26 and both, and 0xffffffff (which only reads the current value):
the set Docker allows. READ_IMPLIES_EXEC and ADDR_NO_RANDOMIZE are refused."""



def _words(text: str) -> list[str]:
    return text.split()


_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "amd64": "SCMP_ARCH_X86_64",
           "aarch64": "SCMP_ARCH_AARCH64", "arm64": "SCMP_ARCH_AARCH64"}

ALLOWED = _words("""
accept accept4 access alarm bind brk cachestat capget chdir chmod chown clock_getres
clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat
fchmodat2 fchown fchownat fcntl fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr
fstat fstatfs fsync ftruncate futex futex_requeue futex_wait futex_waitv futex_wake futimesat
get_mempolicy get_robust_list getcpu getcwd getdents getdents64 getegid geteuid getgid getgroups
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresuid
getrlimit getrusage getsid getsockname getsockopt gettid gettimeofday getuid getxattr
getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy
io_getevents io_pgetevents io_setup io_submit ioctl ioprio_get kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr
listxattrat llistxattr lremovexattr lseek lsetxattr lstat madvise map_shadow_stack mbind
membarrier memfd_create mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mprotect
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap mseal msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat open openat openat2 pause
pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages removexattr
removexattrat rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile sendmmsg
sendmsg sendto set_mempolicy set_robust_list set_tid_address setfsgid setfsuid setgid setgroups
setitimer setpgid setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt
setuid setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
splice stat statfs statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_settime timerfd_create
timerfd_gettime timerfd_settime times tkill truncate umask uname unlink unlinkat utime utimensat
utimes vfork vmsplice wait4 waitid write writev
""")
"""Calls allowed with any arguments: Docker's default list, less what is refused above and the
32-bit-only names, plus the NUMA memory-policy calls PyTorch's allocators make."""

ARCH_SPECIFIC = {"SCMP_ARCH_X86_64": ["arch_prctl"], "SCMP_ARCH_AARCH64": []}
"""Allowed on one architecture only (``arch_prctl`` sets the thread pointer on x86-64)."""

DENIED = frozenset(_words("""
io_uring_setup io_uring_enter io_uring_register bpf userfaultfd perf_event_open ptrace
process_vm_readv process_vm_writev kcmp keyctl add_key request_key kexec_load kexec_file_load
init_module finit_module delete_module mount umount2 pivot_root chroot fsopen fsconfig fsmount
fspick move_mount open_tree mount_setattr unshare setns open_by_handle_at name_to_handle_at
quotactl syslog acct reboot swapon swapoff settimeofday clock_settime clock_adjtime adjtimex
sethostname setdomainname fanotify_init lookup_dcookie vhangup iopl ioperm modify_ldt uselib
ustat sysfs _sysctl nfsservctl personality clone clone3 socket socketpair
"""))
"""Never allowed outright (``personality``, ``clone``, ``clone3``, ``socket`` and ``socketpair``
only through the argument rules); a test checks none of them is in ``ALLOWED``."""


def architecture(machine: str | None = None) -> str:
    """The seccomp name of the host's architecture."""
    machine = (machine or platform.machine()).lower()
    if machine not in _ARCHES:
        raise ValueError(f"no seccomp profile for the {machine!r} architecture")
    return _ARCHES[machine]


def _rule(name: str, *args: dict[str, Any], action: str = "SCMP_ACT_ALLOW",
          errno: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"names": [name], "action": action, "args": list(args)}
    if errno is not None:
        rule["errnoRet"] = errno
    return rule


def _arg(index: int, value: int, op: str = "SCMP_CMP_EQ", value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def profile(machine: str | None = None) -> dict[str, Any]:
    """The profile as the engine reads it (the JSON format of Docker's ``seccomp=`` option)."""
    arch = architecture(machine)
    rules = [{"names": ALLOWED + ARCH_SPECIFIC[arch], "action": "SCMP_ACT_ALLOW", "args": []}]
    for family in SOCKET_FAMILIES:
        rules.append(_rule("socket", _arg(0, family)))
        rules.append(_rule("socketpair", _arg(0, family)))
    for persona in PERSONALITIES:
        rules.append(_rule("personality", _arg(0, persona)))
    # clone(flags, ...) on x86-64 and arm64: flags is the first argument
    rules.append(_rule("clone", _arg(0, NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)))
    rules.append(_rule("clone3", action="SCMP_ACT_ERRNO", errno=ENOSYS))
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "architectures": [arch], "syscalls": rules}


@cache
def security_opt() -> str:
    """The ``security_opt`` entry that applies the profile to a container."""
    return "seccomp=" + json.dumps(profile(), separators=(",", ":"))
