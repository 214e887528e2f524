"""LiveCodeBench code generation: problems from the dataset's JSONL release files (problems,
private_tests, dataset), the official chat prompt (prompt), and grading of model-written solutions in
the sandbox with lcb_runner's semantics (grader on the host, driver inside)."""
