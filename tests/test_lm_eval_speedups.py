"""The Jinja template cache renders exactly what lm-eval's own apply_template renders, compiling
each template source once."""

from __future__ import annotations

import jinja2
import lm_eval.utils

from harness.benchmarks import lm_eval_speedups

TEMPLATES = [
    "Question: {{question}}\nAnswer:",
    "{{question | regex_replace('[0-9]+', 'N')}} {% if answer %}#### {{answer}}{% endif %}\n",
    "{{ choices[label] }}",
]
DOCS = [{"question": "What is 12 + 30?", "answer": "42", "choices": ["a", "b"], "label": 1},
        {"question": "No digits", "answer": "", "choices": ["x", "y"], "label": 0}]


def original_apply_template(template: str, doc: dict) -> str:
    return lm_eval.utils.env.from_string(template).render(**doc)


def test_cached_templates_render_exactly_as_lm_eval_and_compile_once(monkeypatch):
    compiled: list[str] = []
    real_from_string = lm_eval.utils.env.from_string

    def counting(source, *args, **kwargs):
        compiled.append(source)
        return real_from_string(source, *args, **kwargs)

    monkeypatch.setattr(lm_eval.utils, "apply_template", lm_eval.utils.apply_template)  # restored after
    monkeypatch.setattr(lm_eval.utils.env, "from_string", counting)
    if getattr(lm_eval.utils.apply_template, "harness_cached", False):  # installed by an earlier test
        monkeypatch.setattr(lm_eval.utils, "apply_template", original_apply_template)
    lm_eval_speedups.install()
    assert lm_eval.utils.apply_template.harness_cached
    for _ in range(50):
        for template in TEMPLATES:
            for doc in DOCS:
                assert lm_eval.utils.apply_template(template, doc) == real_from_string(template).render(**doc)
    assert sorted(compiled) == sorted(TEMPLATES)  # 300 renders, 3 compiles
    lm_eval_speedups.install()  # idempotent: no second wrapper
    assert lm_eval.utils.apply_template("{{question}}", DOCS[0]) == "What is 12 + 30?"


def test_strict_undefined_still_raises():
    lm_eval_speedups.install()
    try:
        lm_eval.utils.apply_template("{{missing}}", {})
    except jinja2.UndefinedError:
        return
    raise AssertionError("an undefined variable must raise, as lm-eval's StrictUndefined does")
