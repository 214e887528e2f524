"""Task loading over only the folders a task needs, local copies in the hub layout, and the
lm-eval bridge's request building."""

import pytest

from harness.endpoints.adapter import EndpointLM, generation_params
from harness.config import ConfigError, GenerationConfig, ModelConfig, TaskConfig
from harness.benchmarks.lm_tasks import fingerprint, load_tasks
from tests.conftest import GSM8K_TEST, GSM8K_TRAIN, write_gsm8k


def _gsm8k_cfg(path) -> TaskConfig:
    return TaskConfig(name="gsm8k", lm_eval_task="gsm8k", task_dirs=["lm_eval:gsm8k"], dataset_path=str(path),
                      dataset_repo="openai/gsm8k", num_fewshot=1)


def test_two_local_copies_with_the_same_name_do_not_share_data(tmp_path):
    small = write_gsm8k(tmp_path / "a", test=GSM8K_TEST[:2])
    full = write_gsm8k(tmp_path / "b", test=GSM8K_TEST)
    fp_small = fingerprint(load_tasks(_gsm8k_cfg(small))["gsm8k"], _gsm8k_cfg(small))
    fp_full = fingerprint(load_tasks(_gsm8k_cfg(full))["gsm8k"], _gsm8k_cfg(full))
    assert (fp_small.n_docs, fp_full.n_docs) == (2, 4)
    assert fp_small.sha256 != fp_full.sha256
    assert fp_full.repo == "openai/gsm8k" and fp_full.local_path == str(full)


def test_fingerprint_depends_on_content_not_location(tmp_path):
    one = write_gsm8k(tmp_path / "one")
    two = write_gsm8k(tmp_path / "two")
    assert fingerprint(load_tasks(_gsm8k_cfg(one))["gsm8k"], _gsm8k_cfg(one)).sha256 == \
        fingerprint(load_tasks(_gsm8k_cfg(two))["gsm8k"], _gsm8k_cfg(two)).sha256


def test_task_overrides_reach_lm_eval(gsm8k_dir):
    task = load_tasks(_gsm8k_cfg(gsm8k_dir))["gsm8k"]
    assert task.config.num_fewshot == 1
    assert [d["question"] for d in task.eval_docs] == [q for q, _ in GSM8K_TEST]
    assert len(task.dataset["train"]) == len(GSM8K_TRAIN)


def test_missing_local_copy_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="task.dataset_path"):
        load_tasks(_gsm8k_cfg(tmp_path / "nowhere"))


def test_unknown_lm_eval_task_lists_the_known_ones(gsm8k_dir):
    cfg = _gsm8k_cfg(gsm8k_dir)
    cfg.lm_eval_task = "gsm9k"
    with pytest.raises(ConfigError, match="gsm8k_cot"):
        load_tasks(cfg)


MODEL = ModelConfig(name="m", model_id="served-m", generation=GenerationConfig(temperature=0.0, max_tokens=None))


def test_model_config_governs_generation_and_task_supplies_max_tokens():
    params = generation_params(MODEL, {"until": ["Q:"], "max_gen_toks": 2048, "temperature": 0.7, "do_sample": True})
    assert params == {"max_tokens": 2048, "temperature": 0.0}


def test_model_max_tokens_and_thinking_toggle():
    model = ModelConfig(name="v4", model_id="deepseek-v4-pro", thinking=True,
                        generation=GenerationConfig(temperature=None, max_tokens=32768, reasoning_effort="max"))
    params = generation_params(model, {"max_gen_toks": 256})
    assert params == {"max_tokens": 32768, "reasoning_effort": "max",
                      "extra_body": {"thinking": {"type": "enabled"}}}
    model.thinking = False
    assert generation_params(model, {})["extra_body"] == {"thinking": {"type": "disabled"}}


def test_default_max_tokens_is_lm_evals_when_nobody_sets_one():
    assert generation_params(MODEL, {})["max_tokens"] == 256


def test_loglikelihood_on_a_chat_endpoint_says_why():
    lm = EndpointLM(endpoint=None, model=MODEL, cache=None)
    with pytest.raises(NotImplementedError, match="chat endpoint.*log-probabilities"):
        lm.loglikelihood([])


def test_chat_requests_carry_messages_and_stops():
    lm = EndpointLM(endpoint=None, model=MODEL, cache=None)
    context = lm.apply_chat_template([{"role": "user", "content": "Q: 1+1?"}])
    request = lm._chat_request(context, {"until": ["Q:", "</s>"], "max_gen_toks": 64})
    assert request.messages == ({"role": "user", "content": "Q: 1+1?"},)
    assert request.stop == ("Q:", "</s>") and request.model_id == "served-m"
    assert request.params["max_tokens"] == 64


def test_mmlu_pro_group_gets_overrides_in_every_category(mmlu_pro_dir):
    from tests.conftest import MMLU_PRO_CATEGORIES

    cfg = TaskConfig(name="mmlu_pro", lm_eval_task="mmlu_pro", task_dirs=["lm_eval:mmlu_pro"],
                     dataset_path=str(mmlu_pro_dir), num_fewshot=1)
    tasks = load_tasks(cfg)
    assert sorted(tasks) == sorted(f"mmlu_pro_{c.replace(' ', '_')}" for c in MMLU_PRO_CATEGORIES)
    for name, task in tasks.items():
        assert task.config.num_fewshot == 1
        assert task.config.dataset_path == str(mmlu_pro_dir)
        assert [d["category"].replace(" ", "_") for d in task.eval_docs] == [name[len("mmlu_pro_"):]]


def test_unknown_headline_filter_fails_before_any_request(gsm8k_dir):
    from harness.benchmarks.lm_tasks import check_task_config

    cfg = _gsm8k_cfg(gsm8k_dir)
    tasks = load_tasks(cfg)
    check_task_config(tasks, cfg)  # flexible-extract exists
    cfg.filter = "custom-extract"
    with pytest.raises(ConfigError, match="strict-match"):
        check_task_config(tasks, cfg)


def test_mmlu_pro_0shot_prompt_drops_na_and_scores_the_last_answer(mmlu_pro_dir):
    cfg = TaskConfig(name="mmlu_pro_0shot", lm_eval_task="mmlu_pro_0shot", task_dirs=["mmlu_pro_0shot"],
                     dataset_path=str(mmlu_pro_dir))
    task = load_tasks(cfg)["mmlu_pro_0shot_math"]
    doc = task.eval_docs[0]  # options 3, 9, 1, 5, N/A; answer B
    prompt = task.doc_to_text(doc)
    assert "A. 3\nB. 9\nC. 1\nD. 5\n" in prompt and "N/A" not in prompt and "about math" in prompt
    metrics = task.process_results(doc, ["The answer is (A). No wait, the answer is (B)."])
    assert metrics["exact_match"] == 1.0 and metrics["exact_match_official"] == 0.0
    assert metrics["extracted_by_answer_is"] == 1.0
