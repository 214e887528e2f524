"""Isolated execution of model-written Python, on bubblewrap (`bwrap`).

Enters: Python source and its Limits (and, for a conversation, what is written to its stdin).
Leaves: an Execution record, or a running Process to talk to; plus the Isolation record of what ran
it here. The boundary is bwrap's, configured deny-by-default: each run starts from an empty root and
gets, read-only, the system library directories and the interpreter (executable, stdlib, libpython;
site-packages covered by an empty tmpfs); a fresh size-capped tmpfs as its working dir and /tmp, a
small capped /dev/shm, its own /proc and bwrap's minimal /dev, the root and /dev remounted read-only;
every namespace unshared (user, pid, network with an isolated loopback, ipc, uts, cgroup), no further
user namespaces, a new session, no capabilities, uid/gid 65534, an empty environment,
`--die-with-parent`. As root, bwrap itself runs as a fresh unprivileged host uid per run (mapped to host root, the sandbox
would escape RLIMIT_NPROC and could write /proc/sys). Rlimits (CPU, address space, processes, file
size, open files, no core) are set by the first line that runs inside, before the program is
compiled. The wall clock is enforced outside by killing bwrap, which takes the whole pid namespace
with it.

Modules, in the order a run uses them: staging (copies an unprivileged uid can reach), bwrap (the command
line), process (the running program and its I/O), policy (may code run here, and the record of how).
"""

from harness.sandbox.bwrap import NOBODY, Limits, bwrap_options, find_bwrap
from harness.sandbox.policy import (Isolation, SandboxUnavailable, configure, isolation, require,
                                    run_python, start)
from harness.sandbox.process import Execution, Process

__all__ = ["NOBODY", "Execution", "Isolation", "Limits", "Process", "SandboxUnavailable", "bwrap_options",
           "configure", "find_bwrap", "isolation", "require", "run_python", "start"]
