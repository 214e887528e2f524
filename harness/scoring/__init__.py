"""Stage 4 — what the answers are worth.

Enters: lm-eval's per-sample results and our response records. Leaves: per-task scores with 95%
intervals, truncation / extraction-failure / error counts and extraction sensitivity (`scores`),
from the answer rules in `extract` (MMLU-Pro's official chain, GSM8K, LiveCodeBench's code block),
and how fast the answers came (`speed`: p50/p90 of streamed timing).
"""
