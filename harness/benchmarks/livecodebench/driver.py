"""Runs INSIDE the sandbox: executes one solution, one test at a time, as the grader asks.

Shipped into the sandbox as program text (harness.sandbox), so it imports only the standard library,
and only what it needs: no unittest.mock (its asyncio import alone costs ~40 ms per solution).
It follows LiveCodeBench's lcb_runner/evaluation/testing_util.py (commit 16de2a1, 2025-05-23): the
same import prefix, `class Solution` instantiation and `method(*args)` for functional tests;
`if __name__` unwrapping, `wrapped_function`, their stdin stand-in (MockStdinWithBuffer) and a fake
`open` for stdin tests; a per-test SIGALRM timeout. Differences, each for safety:
* the expected outputs never enter the sandbox: the grader sends one test input at a time, this driver
  answers with the raw output (captured stdout, or the return value as a tagged JSON that keeps tuples,
  dicts and sets apart), the grader compares outside and stops at the first failure as lcb_runner does;
* `open()` returns a fresh StringIO of the input (lcb_runner: unittest.mock's mock_open, which also
  restarts at each call); their readline/readlines/read patches land on the replaced stdin object, not
  on the stand-in (mock applies stacked patches bottom-up), so they change nothing and are left out;
* each test's captured output is bounded (status output_limit) instead of growing without end.

Protocol, one JSON object per line. In (stdin): the set-up {"code", "mode", "fn_name", "timeout_s"},
then {"input": str, "max_output_bytes": int} per test. Out (the original stdout, kept on a private fd; the
solution's own fd 1 and 2 go to /dev/null): {"event": "ready"} before reading anything, then
{"event": "compiled"} or {"event": "compile_error", "error"}, then per test {"i", "status": "ok",
"bytes": N, "seconds"} followed by N bytes of output, or {"i", "status": "timeout" | "runtime_error" |
"output_limit", "error"}.
"""

import ast
import json
import os
import signal
import sys
import time
from io import StringIO
from types import ModuleType

IMPORT_STRING = (
    "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
    "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
    "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
    "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
    "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\n"
    "import math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\n"
    "import io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n"
)


class TimeoutException(Exception):
    pass


class OutputLimit(Exception):
    pass


def _on_alarm(signum, frame):
    raise TimeoutException


class BoundedCapture(StringIO):
    """sys.stdout during a test: refuses to grow past the bound (and remembers that it was asked to)."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit
        self.size = 0
        self.exceeded = False

    def write(self, text):
        self.size += len(text)
        if self.size > self.limit:
            self.exceeded = True
            raise OutputLimit(f"more than {self.limit} characters of output")
        return super().write(text)

    def close(self):  # lcb_runner's Capturing makes close a no-op too
        pass


class MockBuffer:
    """lcb_runner's MockBuffer (sys.stdin.buffer), quirks included: readline is always the first line."""

    def __init__(self, inputs):
        self.inputs = inputs.encode("utf-8")

    def read(self, *args):
        return self.inputs

    def readline(self, *args):
        return self.inputs.split(b"\n")[0] + b"\n"


class MockStdinWithBuffer:
    """lcb_runner's stdin stand-in: read() and readlines() give the whole input each time."""

    def __init__(self, inputs):
        self.inputs = inputs
        self._stringio = StringIO(inputs)
        self.buffer = MockBuffer(inputs)

    def read(self, *args):
        return self.inputs

    def readline(self, *args):
        return self._stringio.readline(*args)

    def readlines(self, *args):
        return self.inputs.split("\n")

    def __getattr__(self, name):
        return getattr(self._stringio, name)


def clean_if_name(code):
    """Their clean_if_name: a trailing `if __name__ == '__main__':` block becomes top-level code."""
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            code = ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:
        pass
    return code


def make_function(code):
    """Their make_function: imports stay at top level, everything else becomes `wrapped_function`."""
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        others = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        function = ast.FunctionDef(
            name="wrapped_function",
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=others, decorator_list=[], lineno=-1)
        return IMPORT_STRING + "\n" + ast.unparse(imports) + "\n" + ast.unparse(function)
    except Exception:
        return code


def compile_solution(code, timeout):
    signal.alarm(timeout)
    try:
        module = ModuleType("tmp_sol", "")
        exec(code, module.__dict__)
        return module.Solution() if "class Solution" in code else module
    finally:
        signal.alarm(0)


def tag(value):
    """JSON that keeps what `==` distinguishes: tuples, dicts with any keys, sets, non-finite floats.
    Subclasses become their base values, so a custom __eq__ cannot make a wrong answer equal."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        return value if value == value and value not in (float("inf"), float("-inf")) else {"__float__": repr(value)}
    if isinstance(value, list):
        return [tag(v) for v in value]
    if isinstance(value, tuple):
        return {"__tuple__": [tag(v) for v in value]}
    if isinstance(value, dict):
        return {"__dict__": [[tag(k), tag(v)] for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {"__set__": [tag(v) for v in value]}
    return {"__repr__": object.__repr__(value)[:300], "__type__": type(value).__name__}


def call_with_stdin(method, inputs):
    """Their call_method: the stdin stand-in and a fake open() serve the test input."""
    import builtins

    real_stdin, real_open = sys.stdin, builtins.open
    sys.stdin = MockStdinWithBuffer(inputs)
    builtins.open = lambda *args, **kwargs: StringIO(inputs)
    try:
        return method()
    except SystemExit:
        pass
    finally:
        sys.stdin, builtins.open = real_stdin, real_open


def main():
    sys.set_int_max_str_digits(50000)
    # The protocol keeps private copies of fds 0 and 1; the solution's fds 0, 1, 2 lead nowhere.
    ctrl_in = os.fdopen(os.dup(0), "rb")
    ctrl_out = os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    def emit(record, payload=b""):
        data = json.dumps(record).encode() + b"\n" + payload
        view = memoryview(data)
        while view:
            view = view[os.write(ctrl_out, view):]

    emit({"event": "ready"})
    spec = json.loads(ctrl_in.readline())
    timeout = int(spec["timeout_s"])
    functional = spec["mode"] == "functional"
    code, fn_name = spec["code"], spec["fn_name"]
    del spec
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        if functional:
            solution = compile_solution(IMPORT_STRING + "\n\n" + code, timeout)
            method = getattr(solution, fn_name)
        else:
            module = compile_solution(make_function(clean_if_name(code)), timeout)
            method = getattr(module, "wrapped_function")
    except BaseException as exc:  # SystemExit / KeyboardInterrupt raised by the code itself count too
        emit({"event": "compile_error", "error": repr(exc)[:500]})
        return
    emit({"event": "compiled"})

    index = 0
    while True:
        line = ctrl_in.readline()
        if not line:
            return
        request = json.loads(line)
        raw, limit = request["input"], int(request["max_output_bytes"])
        real_stdout = sys.stdout
        captured = BoundedCapture(limit)
        signal.alarm(timeout)
        try:
            if functional:
                args = [json.loads(arg) for arg in raw.split("\n")]
                started = time.time()
                prediction = method(*args)
                signal.alarm(0)
                if isinstance(prediction, tuple):  # theirs: tuples count as lists at the top level
                    prediction = list(prediction)
                payload = json.dumps(tag(prediction)).encode()
            else:
                sys.stdout = captured
                started = time.time()
                call_with_stdin(method, raw)
                signal.alarm(0)
                sys.stdout = real_stdout
                if captured.exceeded:
                    raise OutputLimit(f"more than {limit} characters of output")
                payload = captured.getvalue().encode("utf-8", "surrogatepass")
            if len(payload) > limit:
                raise OutputLimit(f"{len(payload)} bytes of output, more than {limit}")
            emit({"i": index, "status": "ok", "bytes": len(payload), "seconds": time.time() - started}, payload)
        except BaseException as exc:
            signal.alarm(0)
            sys.stdout = real_stdout
            if isinstance(exc, OutputLimit) or captured.exceeded:
                status = "output_limit"
            else:
                status = "timeout" if isinstance(exc, TimeoutException) else "runtime_error"
            emit({"i": index, "status": status, "error": repr(exc)[:500]})
            return
        finally:
            signal.alarm(0)
            sys.stdout = real_stdout
        index += 1


if __name__ == "__main__":
    main()
