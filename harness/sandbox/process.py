"""One sandboxed program as a running process, with deadline-bounded I/O on its stdin and stdout.

Enters: a program, its Limits, and whether it runs unsafe (without bwrap). Leaves: a Process to talk
to, or (`execute`) an Execution record of a whole run. Every read and write has the run's deadline;
stdout is read with a bound per read, stderr drained alongside with a cap; `finish` leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from harness.sandbox import bwrap
from harness.sandbox.bwrap import Limits

_CHUNK = 1 << 20
_MAX_SOURCE = 100_000  # the program travels as one argv string (the kernel caps those at 128 KiB)


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
        argv = bwrap.argv(program, limits, unsafe)
        run_as = None if unsafe else bwrap.fresh_host_uid()
        ids = {"user": run_as, "group": run_as, "extra_groups": []} if run_as is not None else {}
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, **ids,
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
        # stdout read ahead of the reader is kept up to this; past it the program is cut off (overflowed)
        self.stdout_cap = limits.max_output_bytes + _CHUNK
        self.overflowed = False
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
            elif chunk and len(self._buffer) + len(chunk) <= self.stdout_cap:
                self._buffer += chunk
            else:  # end of output, or more unread output than anyone asked for
                self.overflowed = self.overflowed or bool(chunk)
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
        self.stdout_cap = max(self.stdout_cap, 2 * _CHUNK)
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
        return self._proc.returncode

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self.started


def execute(source: str, stdin: bytes, limits: Limits, unsafe: bool) -> Execution:
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
        proc.finish()  # idempotent; after an exception (e.g. Ctrl-C) on the way, nothing outlives the call
    killed = code is not None and code < 0
    return Execution(exit_code=None if killed else code, signal=-code if killed else None,
                     stdout=out.decode("utf-8", errors="replace"),
                     stderr=bytes(proc.stderr).decode("utf-8", errors="replace"),
                     timed_out=proc.timed_out, output_truncated=truncated or len(proc.stderr) >= limits.max_output_bytes,
                     wall_s=proc.wall_s)
