"""LiveCodeBench grading (harness.benchmarks.livecodebench.grader + driver) with real sandboxed processes: the
fixture problems' correct and wrong solutions, LiveCodeBench's comparison rules, slow and crashing
solutions, and adversarial ones, each contained and graded as failed while grading goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.benchmarks.livecodebench.dataset import TestCase, load_problems
from harness.benchmarks.livecodebench.grader import GradeJob, grade, grade_many, stdout_matches, untag
from harness.benchmarks.livecodebench.prompt import chat_messages, extract_code, question_prompt

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "livecodebench"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def problems():
    return {p.question_id: p for p in load_problems(FIXTURES, "release_v3")}


def job_for(problem, code: str) -> GradeJob:
    return GradeJob(code, problem.public_test_cases + problem.private_test_cases, problem.func_name)


def stdin_job(code: str, *pairs: tuple[str, str]) -> GradeJob:
    return GradeJob(code, tuple(TestCase(i, o, "stdin") for i, o in pairs), None)


def functional_job(code: str, func: str, *pairs: tuple[str, str]) -> GradeJob:
    return GradeJob(code, tuple(TestCase(i, o, "functional") for i, o in pairs), func)


# ---------------------------------------------------------------------------------------- fixtures


def test_every_fixture_problem_correct_passes_and_wrong_fails(problems):
    ids = sorted(SOLUTIONS)
    jobs = [job_for(problems[q], SOLUTIONS[q]["correct"]) for q in ids] + \
           [job_for(problems[q], SOLUTIONS[q]["wrong"]) for q in ids]
    grades = grade_many(jobs, show_progress=False)
    correct, wrong = grades[:len(ids)], grades[len(ids):]
    assert [g.status for g in correct] == ["passed"] * len(ids), [(q, g.detail) for q, g in zip(ids, correct)]
    assert all(g.n_passed == g.n_tests > 0 for g in correct)
    assert not any(g.passed for g in wrong)
    assert {g.status for g in wrong} <= {"wrong_answer", "runtime_error"}


def test_float_output_compared_as_decimals_like_lcb(problems):
    # abc901_b expects "2.5" and the correct solution prints 2.5000000000: equal as Decimals.
    assert grade(job_for(problems["abc901_b"], SOLUTIONS["abc901_b"]["correct"])).passed
    assert stdout_matches("2.5000000000\n", "2.5") == (True, "")
    assert stdout_matches("1 2.50\n3", "1 2.5\n3") == (True, "")
    # No tolerance beyond Decimal equality, as theirs: 0.3333 != 0.333.
    assert not stdout_matches("0.3333", "0.333")[0]
    # Line count must match after stripping the whole output; trailing spaces per line ignored.
    assert stdout_matches("  a b  \nc\n\n", "a b\nc") == (True, "")
    ok, why = stdout_matches("a\nb", "a")
    assert not ok and "mismatched output length" in why


# ------------------------------------------------------------------------------------- semantics


def test_functional_tuple_counts_as_list_at_top_level_only():
    top = "class Solution:\n    def f(self, x):\n        return (x, x)\n"
    nested = "class Solution:\n    def f(self, x):\n        return [(x, x)]\n"
    assert grade(functional_job(top, "f", ("1", "[1, 1]"))).passed
    # lcb_runner compares [(1, 1)] == [[1, 1]] -> False; JSON would have hidden the tuple.
    g = grade(functional_job(nested, "f", ("1", "[[1, 1]]")))
    assert g.status == "wrong_answer"


def test_functional_multiple_json_arguments_and_bool_int_equality():
    code = "class Solution:\n    def f(self, nums, k):\n        return sum(nums) > k\n"
    assert grade(functional_job(code, "f", ("[1,2,3]\n5", "true"), ("[1]\n5", "false"))).passed
    # Python's True == 1 holds in their `==`, so it holds here too.
    one = "class Solution:\n    def f(self, x):\n        return True\n"
    assert grade(functional_job(one, "f", ("0", "1"))).passed


def test_untag_round_trips_what_eq_distinguishes():
    assert untag({"__tuple__": [1, 2]}) == (1, 2)
    assert untag({"__dict__": [["k", "a"]]}) == {"k": "a"}
    # A set or a dict keyed by non-strings equals no JSON value: kept opaque (never rebuilt), equal to nothing.
    assert untag({"__dict__": [[1, "a"]]}) != {1: "a"} and untag({"__dict__": [[1, "a"]]}) != {"1": "a"}
    assert untag({"__set__": [1, 2]}) != [1, 2] and untag({"__set__": [1, 2]}) != {1, 2}
    assert untag({"__repr__": "<obj>", "__type__": "X"}) != untag({"__repr__": "<obj>", "__type__": "X"})


def test_stdin_program_with_main_guard_and_sys_stdin_reads():
    code = ("import sys\n\ndef main():\n    data = sys.stdin.read().split()\n    print(sum(map(int, data)))\n\n"
            "if __name__ == '__main__':\n    main()\n")
    assert grade(stdin_job(code, ("1 2 3", "6"), ("10\n20", "30"))).passed


def test_first_failure_stops_and_is_reported():
    code = "x = int(input())\nprint(x if x < 3 else -1)\n"
    g = grade(stdin_job(code, ("1", "1"), ("2", "2"), ("5", "5"), ("1", "1")))
    assert (g.status, g.n_passed, g.failed_test) == ("wrong_answer", 2, 2)


def test_runtime_error_compile_error_and_missing_code():
    crash = grade(stdin_job("print(1 // 0)\n", ("", "0")))
    assert crash.status == "runtime_error" and "ZeroDivisionError" in crash.detail
    syntax = grade(stdin_job("def broken(:\n", ("", "0")))
    assert syntax.status == "compile_error" and "SyntaxError" in syntax.detail
    missing = grade(functional_job("class Solution:\n    pass\n", "f", ("1", "1")))
    assert missing.status == "compile_error" and "AttributeError" in missing.detail
    assert grade(stdin_job("", ("", ""))).status == "no_code"


def test_slow_solution_times_out_per_test():
    code = "import time\nx = input()\nif x == 'slow':\n    time.sleep(30)\nprint(x)\n"
    started = time.monotonic()
    g = grade(stdin_job(code, ("fast", "fast"), ("slow", "slow")), per_test_timeout_s=1)
    assert (g.status, g.n_passed, g.failed_test) == ("timeout", 1, 1)
    assert time.monotonic() - started < 10


def test_solution_ignoring_the_per_test_alarm_is_killed_by_the_whole_solution_timeout():
    # Catches the driver's timeout exception and keeps spinning: only the outer wall clock can stop it.
    code = ("import time\nwhile True:\n    try:\n        while True:\n            pass\n"
            "    except BaseException:\n        pass\n")
    started = time.monotonic()
    g = grade(stdin_job(code, ("", "")), per_test_timeout_s=1)
    assert not g.passed and g.status in ("global_timeout", "timeout")
    assert time.monotonic() - started < (1 + 1) * 1 + 5 + 10


# ------------------------------------------------------------------------------------- prompt


def test_prompt_is_lcb_generic_template(problems):
    functional, stdin = problems["9001"], problems["abc900_a"]
    text = question_prompt(functional.question_content, functional.starter_code)
    assert text == (f"### Question:\n{functional.question_content}\n\n### Format: You will use the following starter "
                    f"code to write the solution to the problem and enclose your code within delimiters.\n```python\n"
                    f"{functional.starter_code}\n```\n\n### Answer: (use the provided format with backticks)\n\n")
    text = question_prompt(stdin.question_content, "")
    assert "### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not " \
           "directly test on the sample inputs). Enclose your code within delimiters as follows.\n```python\n" \
           "# YOUR CODE HERE\n```\n\n### Answer:" in text
    messages = chat_messages({"question_content": "Q", "starter_code": ""})
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are an expert Python programmer.")
    assert messages[0]["content"].endswith("You will NOT return anything except for the program.")


def test_extract_code_last_and_first_block():
    text = "Draft:\n```python\nprint(1)\n```\nFixed:\n```python\nprint(2)\n```\nDone."
    assert extract_code(text, "last") == "print(2)"
    assert extract_code(text, "first") == "print(1)"
    assert extract_code("no fences here", "last") == ""
    # An unclosed trailing fence does not pair with the previous block's closing fence.
    assert extract_code("```\na\n```\ntext\n```\nunfinished", "last") == "a"


# ------------------------------------------------------------------------------------- machinery


def test_a_failure_of_the_grading_machinery_is_recorded_on_that_solution_and_the_rest_are_graded(monkeypatch):
    """The sandbox itself failing (here: bwrap cannot start) must not stop the run, nor be the solution's fault."""
    from harness.benchmarks.livecodebench import grader

    real = grader.sandbox.start
    calls = []

    def flaky(program, limits):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("cannot start bwrap")
        return real(program, limits)

    monkeypatch.setattr(grader.sandbox, "start", flaky)
    broken, fine = grade_many([stdin_job("print(input())\n", ("a", "a")), stdin_job("print(input())\n", ("a", "a"))],
                              show_progress=False, workers=1)
    assert broken.status == "sandbox_error" and "cannot start bwrap" in broken.sandbox_error and not broken.passed
    assert fine.passed
