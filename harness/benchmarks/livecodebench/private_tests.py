"""A problem's private tests: JSON, or base64 -> zlib -> pickle read without ever resolving a global.

LiveCodeBench's own loader calls `pickle.loads` on them, which runs any code a tampered file carries.
Here the pickle is read by `_RestrictedUnpickler` (no global at all, so nothing callable can be
built), the result must be plain str / list / dict / int / float / bool / None, and the zlib stream
is inflated with a cap; anything else raises UntrustedDataError. Nothing from such a record runs.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import zlib
from typing import Any

from harness.benchmarks.livecodebench.problems import LiveCodeBenchDataError, TestCase, UntrustedDataError

TEST_TYPES = ("functional", "stdin")
# Largest inflated size of one problem's private tests. The biggest real ones are tens of MB.
MAX_DECOMPRESSED_BYTES = 512 * 1024 * 1024


# --- private tests: JSON or base64 -> zlib -> restricted pickle -----------------------------

class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data only: no global is ever resolved, so no class can be instantiated and
    no function called (GLOBAL / STACK_GLOBAL / INST / EXT* all go through `find_class`)."""

    def __init__(self, data: bytes, question_id: str):
        super().__init__(io.BytesIO(data))
        self._question_id = question_id

    def find_class(self, module: str, name: str):  # noqa: D102
        raise UntrustedDataError(
            f"LiveCodeBench problem {self._question_id!r}: its private tests are a pickle that "
            f"references the global {module}.{name}; refused (only plain str/list/dict/number "
            f"values are accepted, nothing was executed)"
        )

    def persistent_load(self, pid):  # noqa: D102
        raise UntrustedDataError(
            f"LiveCodeBench problem {self._question_id!r}: its private tests are a pickle with a "
            f"persistent id; refused"
        )


_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, question_id: str) -> None:
    """Raise unless `value` is a tree of str/list/dict(str keys)/int/float/bool/None. Iterative (no
    recursion limit); a container met twice (shared or cyclic references) is refused."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list or kind is dict:
            if id(item) in seen:
                raise UntrustedDataError(
                    f"LiveCodeBench problem {question_id!r}: its private tests pickle has shared "
                    f"or cyclic references; refused"
                )
            seen.add(id(item))
            if kind is dict:
                for key in item:
                    if type(key) is not str:
                        raise UntrustedDataError(
                            f"LiveCodeBench problem {question_id!r}: its private tests pickle "
                            f"has a dict key of type {type(key).__name__}; refused"
                        )
                stack.extend(item.values())
            else:
                stack.extend(item)
            continue
        raise UntrustedDataError(
            f"LiveCodeBench problem {question_id!r}: its private tests pickle holds a "
            f"{kind.__name__}; only str/list/dict/int/float/bool/None are accepted"
        )


def _inflate(data: bytes, question_id: str, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: private tests are neither JSON nor "
            f"base64+zlib ({exc})"
        ) from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise UntrustedDataError(
            f"LiveCodeBench problem {question_id!r}: private tests inflate to more than "
            f"{max_bytes} bytes; refused (cap: max_decompressed_bytes)"
        )
    if not inflater.eof:
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: private tests' zlib stream is truncated"
        )
    return out


def _unpickle_plain(data: bytes, question_id: str) -> Any:
    try:
        value = _RestrictedUnpickler(data, question_id).load()
    except UntrustedDataError:
        raise
    except Exception as exc:  # malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: private tests are not a readable pickle "
            f"({type(exc).__name__}: {exc})"
        ) from None
    _check_plain(value, question_id)
    return value


def _json_loads(text: str, what: str, question_id: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: {what} is not valid JSON ({exc})"
        ) from None


def decode_private_tests(raw: str, question_id: str = "?", *,
                         max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES) -> list[TestCase]:
    """Decode a `private_test_cases` field: a JSON list, or base64(zlib(pickle(JSON string))) as
    LiveCodeBench stores the big ones (its loader: json.loads, else
    json.loads(pickle.loads(zlib.decompress(base64.b64decode(...))))). The pickle goes through
    the restricted unpickler and the inflated size is capped; see the module docstring."""
    if not isinstance(raw, str):
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: private_test_cases is a "
            f"{type(raw).__name__}, expected a string"
        )
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        value = None
    if not isinstance(value, list):
        try:
            packed = base64.b64decode(raw.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise LiveCodeBenchDataError(
                f"LiveCodeBench problem {question_id!r}: private tests are neither JSON nor "
                f"base64 ({exc})"
            ) from None
        value = _unpickle_plain(_inflate(packed, question_id, max_decompressed_bytes), question_id)
        if isinstance(value, str):
            value = _json_loads(value, "the unpickled private tests", question_id)
    return _tests(value, "private_test_cases", question_id)


def _tests(value: Any, what: str, question_id: str) -> list[TestCase]:
    if not isinstance(value, list):
        raise LiveCodeBenchDataError(
            f"LiveCodeBench problem {question_id!r}: {what} is a {type(value).__name__}, "
            f"expected a list of tests"
        )
    tests = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise LiveCodeBenchDataError(
                f"LiveCodeBench problem {question_id!r}: {what}[{i}] is not an object"
            )
        try:
            test = TestCase(input=item["input"], output=item["output"], testtype=item["testtype"])
        except KeyError as exc:
            raise LiveCodeBenchDataError(
                f"LiveCodeBench problem {question_id!r}: {what}[{i}] has no {exc.args[0]!r}"
            ) from None
        if not (isinstance(test.input, str) and isinstance(test.output, str)):
            raise LiveCodeBenchDataError(
                f"LiveCodeBench problem {question_id!r}: {what}[{i}] input/output must be strings"
            )
        if test.testtype not in TEST_TYPES:
            raise LiveCodeBenchDataError(
                f"LiveCodeBench problem {question_id!r}: {what}[{i}] has testtype "
                f"{test.testtype!r}, expected one of {', '.join(TEST_TYPES)}"
            )
        tests.append(test)
    return tests
