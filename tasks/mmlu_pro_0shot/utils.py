"""MMLU-Pro, zero-shot chat chain-of-thought: OUR protocol, not TIGER-AI-Lab's (theirs is the 5-shot
prompt in tasks/mmlu_pro_official). One user message with an instruction naming the category, the
question and its options ("N/A" options dropped, as their preprocess() does), lettered A-J; the model is
asked to finish with "The answer is (X)". Scored with harness.scoring.extract.mmlu_pro_last: the LAST
"answer is (X)", else the last "Answer: X" (a model that reconsiders is scored on its final statement).
"""

from __future__ import annotations

from typing import Any

from harness.scoring.extract import LETTERS, mmlu_pro_last, mmlu_pro_lenient, mmlu_pro_official, mmlu_pro_strict
from harness.benchmarks.mmlu_pro_docs import options_without_na
# The category filters the task YAMLs name (!function utils.process_<category>).
from harness.benchmarks.mmlu_pro_docs import (  # noqa: F401
    process_biology,
    process_business,
    process_chemistry,
    process_computer_science,
    process_economics,
    process_engineering,
    process_health,
    process_history,
    process_law,
    process_math,
    process_other,
    process_philosophy,
    process_physics,
    process_psychology,
)
# Our wording (documented as ours, not official).
INSTRUCTION = ("The following is a multiple choice question about {}. Think step by step, then finish "
               "your response with \"The answer is (X)\" where X is the letter of the correct option.\n\n")
LAST_STAGES = ("answer_is", "answer_colon", "none")


def doc_to_text(doc: dict[str, Any]) -> str:
    text = INSTRUCTION.format(doc["category"]) + "Question: {}\nOptions:\n".format(doc["question"])
    for i, opt in enumerate(options_without_na(doc)):
        text += "{}. {}\n".format(LETTERS[i], opt)
    return text


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    response = results[0]
    last = mmlu_pro_last(response)
    metrics = {
        "exact_match": float(last.answer == doc["answer"]),
        "exact_match_official": float(mmlu_pro_official(response).answer == doc["answer"]),
        "exact_match_strict": float(mmlu_pro_strict(response).answer == doc["answer"]),
        "exact_match_lenient": float(mmlu_pro_lenient(response).answer == doc["answer"]),
    }
    for stage in LAST_STAGES:
        metrics[f"extracted_by_{stage}"] = float(last.stage == stage)
    return metrics
