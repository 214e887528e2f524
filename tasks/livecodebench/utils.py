"""lm-eval hooks for LiveCodeBench code generation: data, prompt, grading, metrics.

The work is done by harness.benchmarks.livecodebench (dataset, prompt, grader) and harness.sandbox; this module
only adapts it to lm-eval. Grading happens in a filter because a filter sees every response of the
task at once, so solutions are graded in parallel across cores (process_results sees one document).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.filter import Filter
from lm_eval.api.registry import register_filter

from harness.benchmarks.livecodebench.dataset import TestCase, lm_eval_dataset
from harness.benchmarks.livecodebench.grader import GradeJob, grade_many
from harness.benchmarks.livecodebench.prompt import extract_code, question_prompt
from harness.common.stats import pass_at_k

PASS_AT_K = (1, 5, 10)
DIFFICULTIES = ("easy", "medium", "hard")


def load_dataset(**kwargs: Any):
    """lm-eval's custom_dataset: {"test": problems} from the JSONL release files in data_dir."""
    return lm_eval_dataset(**kwargs)


def doc_to_text(doc: dict[str, Any]) -> str:
    return question_prompt(doc["question_content"], doc.get("starter_code") or "")


def problem_tests(doc: dict[str, Any]) -> tuple[TestCase, ...]:
    """Public then private tests, the order lcb_runner grades them in."""
    import json

    rows = json.loads(doc["public_tests"]) + json.loads(doc["private_tests"])
    return tuple(TestCase(r["input"], r["output"], r["testtype"]) for r in rows)


@register_filter("lcb_grade")
class GradeFilter(Filter):
    """Extracts the code of each response and grades it in the sandbox; every response becomes its
    grade record (a dict), so per-sample records say why a solution failed."""

    def __init__(self, code_block: str = "last", per_test_timeout_s: int = 6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if code_block not in ("first", "last"):
            raise ValueError(f"lcb_grade: code_block must be 'first' or 'last', not {code_block!r}")
        self.code_block = code_block
        self.per_test_timeout_s = int(per_test_timeout_s)

    def apply(self, resps, docs):
        jobs, owners = [], []
        for index, (responses, doc) in enumerate(zip(resps, docs)):
            tests = problem_tests(doc)
            for response in responses:
                jobs.append(GradeJob(extract_code(response or "", self.code_block), tests, doc.get("func_name") or None))
                owners.append(index)
        grades = grade_many(jobs, per_test_timeout_s=self.per_test_timeout_s)
        out: list[list[dict[str, Any]]] = [[] for _ in resps]
        for owner, grade in zip(owners, grades):
            out[owner].append(grade.to_dict())
        return out


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, float]:
    """pass@1 (the mean over the n samples drawn), per difficulty too, and unbiased pass@k for each k
    the number of samples allows (Chen et al. 2021, harness.common.stats.pass_at_k); named pass_at_k because
    MLflow metric names cannot hold "@"."""
    grades = results[0]
    if isinstance(grades, dict):
        grades = [grades]
    n = len(grades)
    c = sum(1 for g in grades if g["passed"])
    metrics: dict[str, float] = {"pass_at_1": c / n if n else 0.0}
    for k in PASS_AT_K[1:]:
        if n >= k:
            metrics[f"pass_at_{k}"] = pass_at_k(n, c, k)
    if doc.get("difficulty") in DIFFICULTIES:
        metrics[f"pass_at_1_{doc['difficulty']}"] = metrics["pass_at_1"]
    metrics["no_code"] = sum(g["status"] == "no_code" for g in grades) / n if n else 0.0
    metrics["sandbox_error"] = sum(g["status"] == "sandbox_error" for g in grades) / n if n else 0.0
    return metrics
