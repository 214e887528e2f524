"""A pids cgroup per run, for when the harness runs as root.

RLIMIT_NPROC does not apply to processes whose real uid is host root (kernel/fork.c exempts
INIT_USER), and bwrap run by root maps the sandbox's uid 65534 onto host root. So as root each run
also gets its own pids cgroup (v2, else v1) with pids.max; `sh` joins it and execs bwrap, so every
process of the run is counted from the start. Not root: the rlimit holds (own user namespace).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time

_cgroup_serial = iter(range(1 << 62))


@functools.cache
def pids_cgroup_root() -> str | None:
    """A pids cgroup directory this (root) process may create children in, or None."""
    if os.geteuid() != 0:
        return None
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/pids"):
        probe = os.path.join(root, f"harness-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        try:
            if os.path.exists(os.path.join(probe, "pids.max")):
                return root
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(probe)
    return None


def new_pids_cgroup(max_tasks: int) -> str | None:
    root = pids_cgroup_root()
    if root is None:
        return None
    path = os.path.join(root, f"harness-sandbox-{os.getpid()}-{next(_cgroup_serial)}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "pids.max"), "w") as f:
            f.write(str(max_tasks))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return path


def remove_cgroup(path: str) -> None:
    for _ in range(50):  # the killed processes leave the cgroup a moment after SIGKILL
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
