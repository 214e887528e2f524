"""LiveCodeBench problems as typed records: a problem, its test cases, and the lm-eval document it
becomes; the errors malformed or untrusted dataset records raise."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any


# --- errors ---------------------------------------------------------------------------------

class LiveCodeBenchDataError(ValueError):
    """A record of the dataset files is malformed (the message names the file/problem)."""


class UntrustedDataError(LiveCodeBenchDataError):
    """A problem's private tests hold something other than plain data (a pickle needing a global,
    a non-JSON value) or inflate beyond the size cap. Nothing from it was executed."""


# --- records --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TestCase:
    """One test as LiveCodeBench stores it. For `functional` tests `input` holds the call's
    arguments as JSON values one per line (e.g. "[2,7,11,15]\\n9") and `output` the JSON of the
    return value; for `stdin` tests they are the program's stdin and expected stdout."""

    __test__ = False  # not a pytest test class

    input: str
    output: str
    testtype: str  # "functional" | "stdin"

    def to_json(self) -> dict[str, str]:
        return {"input": self.input, "output": self.output, "testtype": self.testtype}


@dataclass(frozen=True)
class Problem:
    """A LiveCodeBench code generation problem with its tests decoded (cf. LiveCodeBench's
    `CodeGenerationProblem`). `contest_date` is a `datetime` (parsed with `fromisoformat`, as
    LiveCodeBench does); `to_doc` gives it back as its ISO string."""

    question_title: str
    question_content: str
    platform: str  # leetcode | atcoder | codeforces
    question_id: str
    contest_id: str
    contest_date: dt.datetime
    starter_code: str
    difficulty: str  # easy | medium | hard
    public_test_cases: tuple[TestCase, ...]
    private_test_cases: tuple[TestCase, ...]
    metadata: dict[str, Any] = field(hash=False)
    func_name: str | None = None


def to_doc(problem: Problem) -> dict[str, str | None]:
    """The problem as an lm-eval doc: plain JSON-able values, every one a string (or None for
    `func_name` of stdin problems). The tests are JSON strings of lists of
    {"input", "output", "testtype"}; `metadata` is the JSON of the metadata object."""
    return {
        "question_id": problem.question_id,
        "question_title": problem.question_title,
        "question_content": problem.question_content,
        "platform": problem.platform,
        "contest_id": problem.contest_id,
        "contest_date": problem.contest_date.isoformat(),
        "difficulty": problem.difficulty,
        "starter_code": problem.starter_code,
        "func_name": problem.func_name,
        "metadata": json.dumps(problem.metadata, ensure_ascii=False, sort_keys=True),
        "public_tests": json.dumps([t.to_json() for t in problem.public_test_cases],
                                   ensure_ascii=False),
        "private_tests": json.dumps([t.to_json() for t in problem.private_test_cases],
                                    ensure_ascii=False),
    }


# The keys of `to_doc`, in order.
DOC_COLUMNS = (
    "question_id", "question_title", "question_content", "platform", "contest_id", "contest_date",
    "difficulty", "starter_code", "func_name", "metadata", "public_tests", "private_tests",
)
