"""lm-eval hooks for OpenAI MRCR: data, prompt, grade. The work is done by harness.benchmarks.mrcr
(loader, bins, the card's grader); this module only adapts it to lm-eval."""

from __future__ import annotations

from typing import Any

from harness.benchmarks.mrcr import grade, lm_eval_dataset


def load_dataset(**kwargs: Any):
    """lm-eval's custom_dataset: {"test": items} from the parquet files in data_dir."""
    return lm_eval_dataset(**kwargs)


def doc_to_text(doc: dict[str, Any]) -> str:
    """The dataset's `prompt` cell, byte for byte: the JSON list of the conversation's messages, which the
    adapter sends as those messages (the task's generation_kwargs say `harness_context: chat_messages`)."""
    return doc["prompt"]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """The card's grade of the response, as the headline (mrcr_ratio), under the item's bin and needle
    count (averaged per bin / needle count over the items that have them), and whether the random string
    was missing at the start."""
    response = results[0] or ""
    score = float(grade(response, doc["answer"], doc["random_string_to_prepend"]))
    return {
        "mrcr_ratio": score,
        doc["bin"]: score,
        f"needles_{doc['n_needles']}": score,
        "missing_prefix": float(not response.startswith(doc["random_string_to_prepend"])),
    }
