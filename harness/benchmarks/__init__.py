"""Stage 1 — where documents come from.

Enters: a task config (dataset repo, revision, pins, lm-eval task name, loader options). Leaves:
verified local data (`data.prepare_dataset` → a `pins.VerifiedData` record with every file's hash),
lm-eval task objects indexed from only the folders a run needs (`lm_tasks`), for LiveCodeBench
its problems, prompt and grader (`livecodebench/`), and for OpenAI MRCR its items, bins and grader
(`mrcr`). Imports only stages below it.

Modules: pins (hashes, verification), data (mirror, hub snapshot, prepare), lm_tasks (lm-eval task
loading), lm_eval_speedups (lm-eval's templates compiled once), mmlu_pro_docs (MMLU-Pro's N/A
options and category filters), livecodebench/ (problems, private_tests, dataset, prompt, grader,
driver), mrcr (the card's grader, length bins, o200k_base counting, loader).
"""
