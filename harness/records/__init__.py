"""Stage 6 — what a run leaves behind.

Enters: the resolved config, every response and error, the summary. Leaves: the run folder
(`folder`: config.yaml, requests.jsonl, errors.jsonl, samples.jsonl, summary.json, written
crash-safely), one MLflow run (`tracking`), and run-against-baseline comparisons (`compare`,
`python -m harness.compare`).
"""
