"""MMLU-Pro with TIGER-AI-Lab's own API protocol (github.com/TIGER-AI-Lab/MMLU-Pro, evaluate_from_api.py,
stored version at commit 2a7ec7e4d36766256a1280e574c330d5537adfde), as the chat messages our EndpointLM
sends. What is copied from their script:

* preprocess(): every option equal to "N/A" is dropped, in test AND validation rows, before lettering.
* single_request(): ONE user message, no system message: `instruction + inputs`, where
    instruction = "The following are multiple choice questions (with answers) about {category}. Think step by"
                  " step and then output the answer in the format of \"The answer is (X)\" at the end.\n\n"
                  + format_example(...) for EVERY validation row of the question's category (5 in the
                  real dataset), in dataset order
    inputs      = format_example(question, options)   # no cot_content
* format_example(): "Question: {q}\nOptions: " then "{letter}. {option}\n" per option (the first option
  stays on the "Options: " line), then "Answer: " + cot_content + "\n\n"; an empty cot_content becomes
  "Let's think step by step." and a leading "A: " is cut. So the question itself ends with
  "Answer: Let's think step by step.\n\n" (their `if cot_content == ""` branch is dead code).
* call_api(): temperature=0, top_p=1, max_tokens=4000, no stop sequence.
* Scoring: single_request strips '**' from the response, then extract_answer -> extract_again ->
  extract_final (harness.scoring.extract.mmlu_pro_official); update_result()/save_summary() count a miss with
  `random.seed(12345); x = random.randint(0, len(options) - 1); x == answer_index`
  (harness.scoring.extract.mmlu_pro_random_fallback), which is the number in their *_summary.json.

lm-eval's own fewshot machinery cannot produce this text (it puts a description in a system message and
joins examples with its own delimiters), so the task runs with num_fewshot 0 and OfficialPromptTask
builds the whole prompt from the task's own validation split.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.task import ConfigurableTask

from harness.config import ConfigError
from harness.scoring.extract import (
    LETTERS,
    OFFICIAL_STAGES,
    mmlu_pro_lenient,
    mmlu_pro_official,
    mmlu_pro_random_fallback,
    mmlu_pro_strict,
)
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

INSTRUCTION = ("The following are multiple choice questions (with answers) about {}. Think step by"
               " step and then output the answer in the format of \"The answer is (X)\" at the end.\n\n")


def format_example(question: str, options: list[str], cot_content: str = "") -> str:
    """evaluate_from_api.py format_example, line for line."""
    if cot_content == "":
        cot_content = "Let's think step by step."
    if cot_content.startswith("A: "):
        cot_content = cot_content[3:]
    example = "Question: {}\nOptions: ".format(question)
    for i, opt in enumerate(options):
        example += "{}. {}\n".format(LETTERS[i], opt)
    if cot_content == "":
        example += "Answer: "
    else:
        example += "Answer: " + cot_content + "\n\n"
    return example


def examples_text(category: str, validation_docs) -> str:
    """The instruction plus every validation example of the category, in dataset order."""
    prompt = INSTRUCTION.format(category)
    for each in validation_docs:
        if each["category"] == category:
            prompt += format_example(each["question"], options_without_na(each), each["cot_content"])
    return prompt


def official_prompt(doc: dict[str, Any], validation_docs) -> str:
    """The text of their single user message for `doc`."""
    return examples_text(doc["category"], validation_docs) + format_example(doc["question"], options_without_na(doc))


class OfficialPromptTask(ConfigurableTask):
    """A ConfigurableTask whose prompt is the official one, built from the task's own validation split
    (the dataset the task loaded, so local copies and revisions apply to the examples too)."""

    FEWSHOT_SPLIT = "validation"

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        self._examples_by_category: dict[str, str] = {}
        super().__init__(config=config, **kwargs)

    def doc_to_text(self, doc, doc_to_text=None):
        category = doc["category"]
        if category not in self._examples_by_category:
            self._examples_by_category[category] = examples_text(category, self.dataset[self.FEWSHOT_SPLIT])
        return self._examples_by_category[category] + format_example(doc["question"], options_without_na(doc))

    def fewshot_context(self, doc, num_fewshot, *args, **kwargs):
        if num_fewshot:
            raise ConfigError(
                f"{self.config.task}: the official MMLU-Pro prompt already holds its examples (every "
                f"validation row of the category); run it with num_fewshot 0/null, not {num_fewshot}")
        return super().fewshot_context(doc, num_fewshot, *args, **kwargs)


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    response = results[0]
    official = mmlu_pro_official(response)
    if official.answer is None:
        # update_result: random.seed(12345); x = random.randint(0, len(options) - 1); x == answer_index
        drawn = mmlu_pro_random_fallback(official, n_options=len(options_without_na(doc)))
        fallback_correct = LETTERS.index(drawn.answer) == doc["answer_index"]
    else:
        fallback_correct = official.answer == doc["answer"]
    metrics = {
        "exact_match": float(official.answer == doc["answer"]),
        "exact_match_random_fallback": float(fallback_correct),
        "exact_match_strict": float(mmlu_pro_strict(response).answer == doc["answer"]),
        "exact_match_lenient": float(mmlu_pro_lenient(response).answer == doc["answer"]),
    }
    for stage in OFFICIAL_STAGES:
        metrics[f"extracted_by_{stage}"] = float(official.stage == stage)
    return metrics
