"""tasks/mmlu_pro_official sends exactly the messages TIGER-AI-Lab's evaluate_from_api.py sends, and
scores like it; tasks/mmlu_pro_0shot is our zero-shot chat variant.

The reference below is a transcription of github.com/TIGER-AI-Lab/MMLU-Pro evaluate_from_api.py
(commit 2a7ec7e4d36766256a1280e574c330d5537adfde): preprocess, format_example, the prompt building of
single_request, the message list of call_api and the miss handling of update_result. It is kept apart
from tasks/mmlu_pro_official/utils.py on purpose, and one prompt is also pinned as a literal string.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.endpoints.adapter import EndpointLM
from harness.config import GenerationConfig, ModelConfig, TaskConfig
from harness.benchmarks.lm_tasks import load_tasks, task_manager, task_overrides
from tests.conftest import MMLU_PRO_CATEGORIES, MMLU_PRO_README, MMLU_PRO_TEST, MMLU_PRO_VALIDATION


# ------------------------------------------------------------- the official script, transcribed

def official_preprocess(rows):
    res_df = []
    for each in rows:
        each = dict(each)
        options = []
        for opt in each["options"]:
            if opt == "N/A":
                continue
            options.append(opt)
        each["options"] = options
        res_df.append(each)
    res = {}
    for each in res_df:
        if each["category"] not in res:
            res[each["category"]] = []
        res[each["category"]].append(each)
    return res


def official_format_example(question, options, cot_content=""):
    if cot_content == "":
        cot_content = "Let's think step by step."
    if cot_content.startswith("A: "):
        cot_content = cot_content[3:]
    example = "Question: {}\nOptions: ".format(question)
    choice_map = "ABCDEFGHIJ"
    for i, opt in enumerate(options):
        example += "{}. {}\n".format(choice_map[i], opt)
    if cot_content == "":
        example += "Answer: "
    else:
        example += "Answer: " + cot_content + "\n\n"
    return example


def official_messages(single_question, cot_examples_dict):
    """single_request's prompt building + call_api's message_text."""
    category = single_question["category"]
    cot_examples = cot_examples_dict[category]
    question = single_question["question"]
    options = single_question["options"]
    prompt = "The following are multiple choice questions (with answers) about {}. Think step by" \
             " step and then output the answer in the format of \"The answer is (X)\" at the end.\n\n" \
        .format(category)
    for each in cot_examples:
        prompt += official_format_example(each["question"], each["options"], each["cot_content"])
    input_text = official_format_example(question, options)
    instruction, inputs = prompt, input_text
    return [{"role": "user", "content": instruction + inputs}]


def official_is_correct(pred, each):
    """update_result's count for one stored result (options already without "N/A")."""
    if not pred:
        random.seed(12345)
        x = random.randint(0, len(each["options"]) - 1)
        return x == each["answer_index"]
    return pred == each["answer"]


# ----------------------------------------------------------------------------- a richer fixture

def _row(qid, question, options, answer_index, category, cot=""):
    return {"question_id": qid, "question": question, "options": options, "answer": "ABCDEFGHIJ"[answer_index],
            "answer_index": answer_index, "cot_content": cot, "category": category, "src": f"fixture-{category}"}


def _validation_rows():
    rows = []
    for k in range(5):  # five examples per category, categories interleaved as in a shuffled file
        for c, category in enumerate(MMLU_PRO_CATEGORIES):
            qid = 1000 + 100 * k + c
            options = [f"{category} value {j}" for j in range(4 + k)]
            if k == 0:
                cot = f"A: Let's think step by step. In {category}, value 1 fits best. The answer is (B)."
            elif k == 1:
                cot = ""  # becomes "Let's think step by step."
                options = options[:2] + ["N/A"] + options[2:]  # N/A in the middle: dropped, letters shift
            elif k == 2:
                cot = "Think about units first.\nThen compare. The answer is (C)."  # no "A: " prefix
            elif k == 3:
                cot = "A: A: doubled prefix, only the first is cut. The answer is (A)."
                options = options + ["N/A", "N/A"]
            else:
                cot = "A: Let's think step by step. Unicode: µ, ≥, “quotes”. The answer is (J)."
                options = [f"opt {j}" for j in range(10)]
            rows.append(_row(qid, f"Example {k} about {category}?", options, min(k, len(options) - 1), category, cot))
    return rows


def _test_rows():
    rows = []
    for c, category in enumerate(MMLU_PRO_CATEGORIES):
        rows.append(_row(c, f"In {category}, which is prime?\nConsider carefully.",
                         ["4", "6", "7", "8", "9", "10", "12", "14", "15", "16"], 2, category))
        rows.append(_row(100 + c, f"In {category}, pick G.", [f"g{j}" for j in range(10)], 6, category))
        rows.append(_row(200 + c, f"In {category}, pick B.", ["x", "y", "z", "N/A", "N/A"], 1, category))
    return rows


VALIDATION = _validation_rows()
TEST = _test_rows()


def write_mmlu_pro(folder: Path, test, validation) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(MMLU_PRO_README)
    for split, rows in (("test", test), ("validation", validation)):
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="module")
def rich_mmlu_pro_dir(tmp_path_factory) -> Path:
    return write_mmlu_pro(tmp_path_factory.mktemp("hub") / "TIGER-Lab" / "MMLU-Pro", TEST, VALIDATION)


def _cfg(group: str, path: Path, num_fewshot=None) -> TaskConfig:
    return TaskConfig(name=group, lm_eval_task=group, task_dirs=[group], dataset_path=str(path),
                      dataset_repo="TIGER-Lab/MMLU-Pro", num_fewshot=num_fewshot, filter="none")


MODEL = ModelConfig(name="m", model_id="served-m",
                    generation=GenerationConfig(temperature=0.0, top_p=1.0, max_tokens=None))


def sent_requests(task, fewshot_as_multiturn=True):
    """What EndpointLM would send for every doc of `task`, in doc order: (doc, ChatRequest)."""
    lm = EndpointLM(endpoint=None, model=MODEL, cache=None)
    task.build_all_requests(apply_chat_template=True, fewshot_as_multiturn=fewshot_as_multiturn,
                            chat_template=lm.apply_chat_template)
    instances = sorted(task.instances, key=lambda inst: inst.doc_id)
    return [(inst.doc, lm._chat_request(*inst.args)) for inst in instances]


# ----------------------------------------------------------------------------------------- prompts

@pytest.fixture(scope="module")
def official_tasks(rich_mmlu_pro_dir):
    return load_tasks(_cfg("mmlu_pro_official", rich_mmlu_pro_dir))


def test_group_has_the_fourteen_categories(official_tasks):
    assert sorted(official_tasks) == sorted(
        f"mmlu_pro_official_{c.replace(' ', '_')}" for c in MMLU_PRO_CATEGORIES)
    for name, task in official_tasks.items():
        assert {d["category"].replace(" ", "_") for d in task.eval_docs} == {name[len("mmlu_pro_official_"):]}
        assert len(task.eval_docs) == 3
        # the documents themselves are untouched (N/A options stay in the data and its fingerprint)
        assert any("N/A" in d["options"] for d in task.eval_docs)


@pytest.mark.parametrize("multiturn", [True, False])
def test_messages_equal_the_official_script(official_tasks, multiturn):
    cot_examples_dict = official_preprocess(VALIDATION)
    reference_tests = official_preprocess(TEST)
    for category in MMLU_PRO_CATEGORIES:
        task = official_tasks[f"mmlu_pro_official_{category.replace(' ', '_')}"]
        sent = sent_requests(task, multiturn)
        expected = [official_messages(each, cot_examples_dict) for each in reference_tests[category]]
        assert [list(request.messages) for _, request in sent] == expected
        for _, request in sent:
            assert request.stop == ()  # their call: no stop sequence
            assert request.params == {"max_tokens": 4000, "temperature": 0.0, "top_p": 1.0}


def test_one_prompt_byte_for_byte(official_tasks):
    (doc, request), *_ = [x for x in sent_requests(official_tasks["mmlu_pro_official_computer_science"])
                          if x[0]["question_id"] == 203]
    (message,) = request.messages
    assert message["role"] == "user"
    expected = (
        'The following are multiple choice questions (with answers) about computer science. Think step by '
        'step and then output the answer in the format of "The answer is (X)" at the end.\n\n'
        "Question: Example 0 about computer science?\n"
        "Options: A. computer science value 0\nB. computer science value 1\nC. computer science value 2\n"
        "D. computer science value 3\n"
        "Answer: Let's think step by step. In computer science, value 1 fits best. The answer is (B).\n\n"
        "Question: Example 1 about computer science?\n"
        "Options: A. computer science value 0\nB. computer science value 1\nC. computer science value 2\n"
        "D. computer science value 3\nE. computer science value 4\n"
        "Answer: Let's think step by step.\n\n"
        "Question: Example 2 about computer science?\n"
        "Options: A. computer science value 0\nB. computer science value 1\nC. computer science value 2\n"
        "D. computer science value 3\nE. computer science value 4\nF. computer science value 5\n"
        "Answer: Think about units first.\nThen compare. The answer is (C).\n\n"
        "Question: Example 3 about computer science?\n"
        "Options: A. computer science value 0\nB. computer science value 1\nC. computer science value 2\n"
        "D. computer science value 3\nE. computer science value 4\nF. computer science value 5\n"
        "G. computer science value 6\n"
        "Answer: A: doubled prefix, only the first is cut. The answer is (A).\n\n"
        "Question: Example 4 about computer science?\n"
        "Options: A. opt 0\nB. opt 1\nC. opt 2\nD. opt 3\nE. opt 4\nF. opt 5\nG. opt 6\nH. opt 7\nI. opt 8\n"
        "J. opt 9\n"
        "Answer: Let's think step by step. Unicode: µ, ≥, “quotes”. The answer is (J).\n\n"
        "Question: In computer science, pick B.\n"
        "Options: A. x\nB. y\nC. z\n"
        "Answer: Let's think step by step.\n\n"
    )
    assert message["content"] == expected


def test_conftest_fixture_prompts_match_too(mmlu_pro_dir):
    tasks = load_tasks(_cfg("mmlu_pro_official", mmlu_pro_dir))
    assert len(tasks) == 14
    cot_examples_dict = official_preprocess(MMLU_PRO_VALIDATION)
    reference = {each["question_id"]: each for rows in official_preprocess(MMLU_PRO_TEST).values() for each in rows}
    for task in tasks.values():
        for doc, request in sent_requests(task):
            assert list(request.messages) == official_messages(reference[doc["question_id"]], cot_examples_dict)
            assert "N/A" not in request.messages[0]["content"]


def test_fewshot_override_is_refused(rich_mmlu_pro_dir):
    tasks = load_tasks(_cfg("mmlu_pro_official", rich_mmlu_pro_dir, num_fewshot=5))
    with pytest.raises(ValueError, match="num_fewshot 0"):
        sent_requests(tasks["mmlu_pro_official_math"])


# ----------------------------------------------------------------------------------------- scoring

def _doc(official_tasks, qid):
    for task in official_tasks.values():
        for doc in task.eval_docs:
            if doc["question_id"] == qid:
                return task, doc
    raise KeyError(qid)


STAGES = ("answer_is", "answer_colon", "last_letter", "none")


def _stages(metrics):
    return {s for s in STAGES if metrics[f"extracted_by_{s}"] == 1.0}


def test_correct_through_the_first_regex(official_tasks):
    task, doc = _doc(official_tasks, 0)  # answer C
    m = task.process_results(doc, ["7 is prime; 9 = 3*3. The answer is (C)."])
    assert m["exact_match"] == m["exact_match_random_fallback"] == m["exact_match_strict"] == 1.0
    assert m["exact_match_lenient"] == 1.0
    assert _stages(m) == {"answer_is"}


def test_correct_only_through_the_last_letter_fallback(official_tasks):
    task, doc = _doc(official_tasks, 0)  # answer C
    m = task.process_results(doc, ["4, 6 and 8 are even, 9 is 3 squared; 7 it is, option C"])
    assert (m["exact_match"], m["exact_match_random_fallback"]) == (1.0, 1.0)
    assert (m["exact_match_strict"], m["exact_match_lenient"]) == (0.0, 1.0)
    assert _stages(m) == {"last_letter"}


def test_first_statement_counts_even_when_the_model_corrects_itself(official_tasks):
    task, doc = _doc(official_tasks, 0)  # answer C
    m = task.process_results(doc, ["The answer is (A). Wait: 4 is even. The answer is (C)."])
    assert (m["exact_match"], m["exact_match_strict"], m["exact_match_lenient"]) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("qid", [0, 100, 200, 5, 105, 205])
def test_a_miss_scores_the_seeded_letter_in_the_summary_metric(official_tasks, qid):
    task, doc = _doc(official_tasks, qid)
    each = official_preprocess([doc])[doc["category"]][0]
    m = task.process_results(doc, ["sorry, cannot help with that."])
    assert m["exact_match"] == 0.0 and _stages(m) == {"none"}
    assert m["exact_match_random_fallback"] == float(official_is_correct(None, each))
    # 10 options: their reseeded draw is always index 6, so the "pick G" question counts as correct.
    if qid in (100, 105):
        assert m["exact_match_random_fallback"] == 1.0
    if qid in (0, 5, 200, 205):  # answer C of 10; answer B of 3 (draw: index 1 of 3 -> B!)
        assert m["exact_match_random_fallback"] == (1.0 if qid >= 200 else 0.0)


def test_scores_match_the_official_counting_on_many_responses(official_tasks):
    from harness.scoring.extract import mmlu_pro_official  # their chain, as ported

    responses = ["The answer is (C).", "Answer: G", "**(B)**", "no idea", "The answer is **(G)**", "I think A",
                 "answer: c", "the answer is (J)"]
    for task in official_tasks.values():
        for doc in task.eval_docs:
            each = official_preprocess([doc])[doc["category"]][0]
            for response in responses:
                m = task.process_results(doc, [response])
                pred = mmlu_pro_official(response).answer
                assert m["exact_match_random_fallback"] == float(official_is_correct(pred, each))
                assert m["exact_match"] == float(pred == doc["answer"])
                assert sum(m[f"extracted_by_{s}"] for s in STAGES) == 1.0


# ------------------------------------------------------------------------------------- lm-eval run

class CannedLM(EndpointLM):
    """EndpointLM's message handling with canned replies instead of an endpoint."""

    def __init__(self, reply):
        super().__init__(endpoint=None, model=MODEL, cache=None)
        self.reply = reply
        self.sent = []

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for instance in requests:
            request = self._chat_request(*instance.args)
            self.sent.append(request)
            out.append(self.reply(instance.doc))
        return out


def test_group_aggregates_weighted_by_size(rich_mmlu_pro_dir):
    from lm_eval import simple_evaluate

    cfg = _cfg("mmlu_pro_official", rich_mmlu_pro_dir)
    manager = task_manager(cfg)
    # The group with our overrides in every child (lm-eval 0.4.13's public load() cannot pass overrides
    # to a registered group's children, see harness.benchmarks.lm_tasks.load_tasks).
    group = manager._factory.build(manager.task_index["mmlu_pro_official"], overrides=task_overrides(cfg),
                                   registry=manager.task_index)
    # per category: question 0+c (answer C), 100+c (answer G of 10), 200+c (answer B of 3)
    answers = {0: "The answer is (C).", 1: "no answer", 2: "Answer: A"}
    lm = CannedLM(lambda doc: answers[doc["question_id"] // 100])
    out = simple_evaluate(model=lm, tasks=[group], task_manager=manager, apply_chat_template=True,
                          bootstrap_iters=0)
    result = out["results"]["mmlu_pro_official"]
    # per category: right, miss (the "pick G" question: random fallback hits), wrong
    assert result["exact_match,none"] == pytest.approx(1 / 3)
    assert result["exact_match_random_fallback,none"] == pytest.approx(2 / 3)
    assert result["extracted_by_none,none"] == pytest.approx(1 / 3)
    assert result["extracted_by_answer_colon,none"] == pytest.approx(1 / 3)
    assert len(lm.sent) == len(TEST)
    assert all(len(r.messages) == 1 and r.messages[0]["role"] == "user" for r in lm.sent)


# -------------------------------------------------------------------------------------- zero-shot

def test_zero_shot_prompt_and_last_statement_scoring(rich_mmlu_pro_dir):
    tasks = load_tasks(_cfg("mmlu_pro_0shot", rich_mmlu_pro_dir))
    assert sorted(tasks) == sorted(f"mmlu_pro_0shot_{c.replace(' ', '_')}" for c in MMLU_PRO_CATEGORIES)
    task = tasks["mmlu_pro_0shot_law"]
    sent = {doc["question_id"]: request for doc, request in sent_requests(task)}
    assert list(sent[208].messages) == [{"role": "user", "content": (
        'The following is a multiple choice question about law. Think step by step, then finish your response '
        'with "The answer is (X)" where X is the letter of the correct option.\n\n'
        "Question: In law, pick B.\nOptions:\nA. x\nB. y\nC. z\n")}]
    assert sent[208].stop == () and sent[208].params["max_tokens"] == 4000

    doc = next(d for d in task.eval_docs if d["question_id"] == 208)  # answer B
    m = task.process_results(doc, ["The answer is (A)... no: the answer is (B)."])
    assert (m["exact_match"], m["exact_match_official"], m["extracted_by_answer_is"]) == (1.0, 0.0, 1.0)
    m = task.process_results(doc, ["Final Answer: B"])
    assert (m["exact_match"], m["extracted_by_answer_colon"]) == (1.0, 1.0)
    m = task.process_results(doc, ["Clearly B."])  # no statement: the zero-shot scorer does not guess
    assert (m["exact_match"], m["exact_match_official"], m["extracted_by_none"]) == (0.0, 1.0, 1.0)
