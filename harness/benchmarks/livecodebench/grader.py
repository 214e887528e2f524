"""Grades model-written solutions with LiveCodeBench's semantics, each in its own sandbox.

Semantics from LiveCodeBench/LiveCodeBench lcb_runner/evaluation (testing_util.py and
compute_code_generation_metrics.py, commit 16de2a1, as driver.py): all public and private tests, in that order; a
problem passes only if every test passes; functional tests call `Solution().<func_name>(*args)` with
each input line JSON-decoded and compare `prediction == json.loads(expected)` (a top-level tuple counts
as a list); stdin tests compare the output line by line after stripping, a line matching exactly or as
the same sequence of Decimals (so "1.50" equals "1.5", but 0.333 does not equal 0.3333: theirs has no
tolerance beyond that); a per-test timeout of 6 s and a whole-solution timeout of
(timeout + 1) x tests + 5 s. The driver (driver.py beside it) runs the code inside
harness.sandbox and reports raw outputs; the expected outputs stay out here, where the comparison is.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness import sandbox
from harness.benchmarks.livecodebench.dataset import TestCase

PER_TEST_TIMEOUT_S = 6  # lcb_runner's default `timeout`
DRIVER_SOURCE = (Path(__file__).parent / "driver.py").read_text()
# A test's output may be up to 4x its expected output + 1 MiB, and never more than this (LiveCodeBench's
# largest expected outputs are a few MB); beyond it the test fails with status output_limit. Not a
# total: every test gets its own amount.
MAX_TEST_OUTPUT_BYTES = 64 << 20
_HEADER_LIMIT = 1 << 16
_TEST_STATUSES = ("ok", "timeout", "runtime_error", "output_limit")
_DETAIL_CHARS = 300

# Their compute_code_generation_metrics.py raises the limit for long integer outputs; json.loads of
# an expected output with more than 4,300 digits fails without it.
sys.set_int_max_str_digits(max(sys.get_int_max_str_digits(), 50_000))


@dataclass(frozen=True)
class GradeJob:
    """One solution to grade: the code and the problem's tests (public then private)."""

    code: str
    tests: tuple[TestCase, ...]
    func_name: str | None  # set for functional (LeetCode) problems


@dataclass(frozen=True)
class Grade:
    passed: bool
    # passed | no_code | compile_error | wrong_answer | runtime_error | timeout | output_limit | global_timeout
    # | sandbox_error (the sandbox itself failed; never for what the solution did)
    status: str
    n_tests: int
    n_passed: int  # tests passed before the first failure
    failed_test: int | None
    detail: str
    wall_s: float
    sandbox_error: str | None = None

    def __post_init__(self) -> None:
        # Details quote what the solution printed: lone surrogates would break every UTF-8 writer downstream.
        object.__setattr__(self, "detail", _printable(self.detail))
        if self.sandbox_error is not None:
            object.__setattr__(self, "sandbox_error", _printable(self.sandbox_error))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Opaque:
    """A value the driver could only describe (an object of some class): equal to nothing."""

    def __init__(self, description: str):
        self.description = description

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return self.description


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def untag(value: Any) -> Any:
    """The inverse of driver.tag: the Python value the solution returned, for `==` with a JSON-decoded
    expected output. A set, or a dict with a key that is not a string, equals no JSON value, so it is not
    rebuilt (building it from crafted colliding hashes would cost the grader quadratic time): it stays
    opaque, equal to nothing, exactly as `==` would have judged it."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(untag(v) for v in value["__tuple__"])
        if "__dict__" in value:
            pairs = value["__dict__"]
            if all(isinstance(k, str) for k, _ in pairs):  # str hashes are randomized per process
                return {k: untag(v) for k, v in pairs}
            return _Opaque(f"<dict with {len(pairs)} items, not all keys strings>")
        if "__set__" in value:
            return _Opaque(f"<set of {len(value['__set__'])} items>")
        if "__float__" in value:
            return float(value["__float__"])
        return _Opaque(f"<{value.get('__type__')}: {value.get('__repr__')}>")
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _DETAIL_CHARS else text[:_DETAIL_CHARS // 2] + "...(truncated)..." + text[-_DETAIL_CHARS // 2:]


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


_TOKEN = re.compile(r"\S+")


def _equal_as_decimals(got: str, want: str) -> bool:
    """Their convert_line_to_decimals on both lines, then list equality; token by token so a huge line
    costs no memory. A token that is not a number, or a comparison that raises (sNaN), is a mismatch."""
    for g, w in itertools.zip_longest(_TOKEN.finditer(got), _TOKEN.finditer(want)):
        if g is None or w is None:
            return False
        try:
            if Decimal(g.group()) != Decimal(w.group()):
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


def stdout_matches(prediction: str, expected: str) -> tuple[bool, str]:
    """Their grade_stdio comparison: same number of stripped lines, each equal or equal as Decimals.
    A signalling NaN (`sNaN`) makes Decimal's == raise; lcb_runner then reports "Error during testing"
    (-4), here it is what it is, a wrong answer."""
    got, want = _stripped_lines(prediction), _stripped_lines(expected)
    if len(got) != len(want):
        return False, "wrong answer: mismatched output length"
    for index, (g, w) in enumerate(zip(got, want)):
        if g == w:
            continue
        if not _equal_as_decimals(g, w):
            return False, f"wrong answer at line {index}: {_short(g)} != {_short(w)}"
    return True, ""


class _Malformed(Exception):
    """The sandbox's answer does not follow the driver's protocol: something inside wrote it."""


def _header(proc: sandbox.Process) -> dict[str, Any] | None:
    line = proc.read_line(_HEADER_LIMIT)
    if line is None:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _Malformed(f"unreadable record {_short(line.decode('utf-8', 'replace'))}") from exc
    if not isinstance(record, dict):
        raise _Malformed(f"unexpected record {_short(record)}")
    return record


def _ended(proc: sandbox.Process, n: int, index: int) -> Grade:
    """The process stopped answering during test `index` (None: while compiling)."""
    proc.finish()
    if proc.overflowed:
        return Grade(False, "runtime_error", n, index or 0, index,
                     "malformed result from the solution's process: more output than the protocol allows", proc.wall_s)
    if proc.timed_out:
        return Grade(False, "global_timeout", n, index or 0, index, "killed: whole-solution timeout", proc.wall_s)
    why = f"the process ended (exit status {proc.returncode})"
    if index is None:
        return Grade(False, "compile_error", n, 0, None, why, proc.wall_s)
    return Grade(False, "runtime_error", n, index, index, why, proc.wall_s)


def _expected_value(test: TestCase) -> Any:
    return json.loads(test.output)


def _check(job: GradeJob, index: int, payload: bytes) -> str | None:
    """None if test `index` passed, else why not; raises _Malformed for output the driver cannot have written."""
    test = job.tests[index]
    try:
        text = payload.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise _Malformed("output that is not the driver's encoding") from exc
    if job.func_name is not None:
        try:
            prediction = untag(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise _Malformed(f"unreadable return value ({type(exc).__name__})") from exc
        try:
            equal = bool(prediction == _expected_value(test))
        except (RecursionError, ValueError, TypeError, InvalidOperation):
            equal = False
        return None if equal else f"got {_short(text[:_DETAIL_CHARS * 2])}, expected {_short(test.output)}"
    ok, why = stdout_matches(text, test.output)
    return None if ok else why


def output_bound(test: TestCase) -> int:
    """How much output test `test` may produce: four times its expected output plus 1 MiB (room for
    whitespace and number formats), at most MAX_TEST_OUTPUT_BYTES. Keeps what is parsed out here, outside
    every sandbox limit, proportionate to the answer."""
    return min(MAX_TEST_OUTPUT_BYTES, 4 * len(test.output.encode("utf-8", "surrogatepass")) + (1 << 20))


def grade(job: GradeJob, per_test_timeout_s: int = PER_TEST_TIMEOUT_S,
          limits: sandbox.Limits | None = None) -> Grade:
    """Runs one solution in a fresh sandbox, one test at a time, comparing each output out here and
    stopping at the first failure (as lcb_runner does): the expected outputs never enter the sandbox."""
    n = len(job.tests)
    if not job.code.strip():
        return Grade(False, "no_code", n, 0, None, "no complete ```-fenced code block in the response", 0.0)
    whole_timeout = (per_test_timeout_s + 1) * n + 5
    limits = limits or default_limits(whole_timeout)
    try:
        proc = sandbox.start(DRIVER_SOURCE, limits)
    except OSError as exc:
        return Grade(False, "sandbox_error", n, 0, None, f"cannot start the sandbox: {exc!r}", 0.0, repr(exc))
    try:
        return _converse(proc, job, per_test_timeout_s)
    finally:
        proc.finish()


def default_limits(whole_timeout: float) -> sandbox.Limits:
    """lcb_runner's 4 GiB of memory per solution; files up to 16 MiB and 64 open (memfd files included)."""
    return sandbox.Limits(wall_seconds=whole_timeout, cpu_seconds=int(whole_timeout) + 1, memory_bytes=4 << 30,
                          file_size_bytes=16 << 20, max_open_files=64)


def _converse(proc: sandbox.Process, job: GradeJob, timeout_s: int) -> Grade:
    n = len(job.tests)
    ready = proc.read_line(_HEADER_LIMIT)
    if ready != b'{"event": "ready"}':  # nothing of the solution has run yet: the sandbox failed
        proc.finish()
        error = (bytes(proc.stderr).decode("utf-8", "replace").strip()
                 or f"the sandbox did not start (exit status {proc.returncode}, first line {_short(repr(ready))}, "
                    f"{'timed out' if proc.timed_out else 'ended'} after {proc.wall_s:.1f} s)")
        return Grade(False, "sandbox_error", n, 0, None, _short(error), proc.wall_s, error)
    setup = {"code": job.code, "mode": "functional" if job.func_name is not None else "stdin",
             "fn_name": job.func_name, "timeout_s": timeout_s}
    proc.stdout_cap = _HEADER_LIMIT + (1 << 20)
    proc.send(json.dumps(setup).encode() + b"\n")
    index: int | None = None
    try:
        record = _header(proc)
        if record is None:
            return _ended(proc, n, None)
        if record.get("event") == "compile_error":
            return Grade(False, "compile_error", n, 0, None, _short(str(record.get("error"))), proc.wall_s)
        if record != {"event": "compiled"}:
            raise _Malformed(f"unexpected record {_short(record)}")
        for index, test in enumerate(job.tests):
            bound = output_bound(test)
            proc.stdout_cap = _HEADER_LIMIT + bound + (1 << 20)
            proc.send(json.dumps({"input": test.input, "max_output_bytes": bound}).encode() + b"\n")
            record = _header(proc)
            if record is None:
                return _ended(proc, n, index)
            status = record.get("status")
            if record.get("i") != index or status not in _TEST_STATUSES:
                raise _Malformed(f"unexpected record {_short(record)}")
            if status != "ok":
                return Grade(False, status, n, index, index, _short(str(record.get("error", ""))), proc.wall_s)
            size = record.get("bytes")
            if not isinstance(size, int) or size < 0:
                raise _Malformed(f"unexpected record {_short(record)}")
            if size > bound:
                return Grade(False, "output_limit", n, index, index, f"{size} bytes of output", proc.wall_s)
            payload = proc.read_exact(size)
            if payload is None:
                return _ended(proc, n, index)
            why = _check(job, index, payload)
            if why is not None:
                return Grade(False, "wrong_answer", n, index, index, why, proc.wall_s)
    except _Malformed as exc:
        at = index or 0
        return Grade(False, "runtime_error", n, at, index, f"malformed result from the solution's process: {exc}",
                     proc.wall_s)
    return Grade(True, "passed", n, n, None, "", proc.wall_s)


def grade_many(jobs: Sequence[GradeJob], workers: int | None = None, show_progress: bool = True,
               per_test_timeout_s: int = PER_TEST_TIMEOUT_S) -> list[Grade]:
    """Grades in parallel, one sandboxed process per solution and one worker per core (threads are
    enough: each waits on its own process). A failure of the grading machinery itself is recorded on
    that solution (status sandbox_error) and the others go on."""
    workers = workers or os.cpu_count() or 1

    def safe(job: GradeJob) -> Grade:
        try:
            return grade(job, per_test_timeout_s)
        except Exception as exc:  # never let one solution stop the run
            message = f"{type(exc).__name__}: {exc}"
            return Grade(False, "sandbox_error", len(job.tests), 0, None, message[:_DETAIL_CHARS], 0.0, message)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(safe, jobs), total=len(jobs), desc="grading", unit="solution",
                            disable=not show_progress or len(jobs) < 2))
    return results
