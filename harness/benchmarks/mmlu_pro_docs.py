"""MMLU-Pro document helpers shared by our task folders (tasks/mmlu_pro_official, tasks/mmlu_pro_0shot):
the options as TIGER-AI-Lab's preprocess() leaves them, and one document filter per category. The task
YAMLs name the filters as `!function utils.process_<category>`, so each utils.py imports them."""

from __future__ import annotations

from functools import partial
from typing import Any


def options_without_na(doc: dict[str, Any]) -> list[str]:
    """The options as evaluate_from_api.py's preprocess() leaves them: every "N/A" dropped."""
    return [opt for opt in doc["options"] if opt != "N/A"]


def process_docs(dataset, subject: str):
    return dataset.filter(lambda x: x["category"] == subject)


process_biology = partial(process_docs, subject="biology")
process_business = partial(process_docs, subject="business")
process_chemistry = partial(process_docs, subject="chemistry")
process_computer_science = partial(process_docs, subject="computer science")
process_economics = partial(process_docs, subject="economics")
process_engineering = partial(process_docs, subject="engineering")
process_health = partial(process_docs, subject="health")
process_history = partial(process_docs, subject="history")
process_law = partial(process_docs, subject="law")
process_math = partial(process_docs, subject="math")
process_other = partial(process_docs, subject="other")
process_philosophy = partial(process_docs, subject="philosophy")
process_physics = partial(process_docs, subject="physics")
process_psychology = partial(process_docs, subject="psychology")
