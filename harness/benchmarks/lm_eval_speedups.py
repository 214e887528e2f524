"""A cache for lm-eval's Jinja templates.

lm-eval renders every doc_to_text / doc_to_target / description through `lm_eval.utils.apply_template`,
which compiles the template from its source string on every call (`env.from_string`): 16,000
compiles for 1,000 GSM8K documents, about 4.5 s of CPU before the first request (bench/throughput.py).
A compiled template depends only on its source and lm-eval's one environment, so compiling each
source once and rendering it per document changes no output. Installed by harness.benchmarks.lm_tasks before
any task builds its requests.
"""

from __future__ import annotations

import functools

import lm_eval.utils


def install() -> None:
    """Replace `lm_eval.utils.apply_template` (looked up at call time by lm-eval's tasks) once."""
    if getattr(lm_eval.utils.apply_template, "harness_cached", False):
        return
    compile_template = functools.lru_cache(maxsize=4096)(lm_eval.utils.env.from_string)

    def apply_template(template: str, doc: dict) -> str:
        return compile_template(template).render(**doc)

    apply_template.harness_cached = True  # type: ignore[attr-defined]
    lm_eval.utils.apply_template = apply_template
