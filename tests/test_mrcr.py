"""OpenAI MRCR: the card's grader (by hand and against difflib), the bins, the loader (needles, bins, what
fits a context), the conversation on the wire, the headline through `python -m harness`, the real local
model, and the dry run of the 1M bin."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import lzma
import re
from difflib import SequenceMatcher
from pathlib import Path

import pytest

from harness.benchmarks import mrcr
from harness.benchmarks.mrcr import BINS, bin_name, bin_of, grade, load_items
from harness.benchmarks.pins import DataError
from tests.conftest import run_harness
from tests.fault_server import FaultServer

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mrcr"
_spec = importlib.util.spec_from_file_location("make_mrcr_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)
pytestmark = pytest.mark.timeout(300)


def o200k(text: str) -> int:
    return len(mrcr.load_o200k_base().encode(text))  # encode (not encode_ordinary), as the card's n_tokens does


# ---------------------------------------------------------------------------------------------
# The grader


def test_grade_is_the_cards_by_hand_and_against_difflib():
    prefix, body = "Ab12Cd34Ef", "hello world"
    answer = prefix + body
    assert grade(answer, answer, prefix) == 1.0                       # exact
    assert grade(body, answer, prefix) == 0                           # no prefix
    assert grade("hello " + prefix + " world", answer, prefix) == 0   # the prefix in the middle
    assert grade(prefix.lower() + body, answer, prefix) == 0          # startswith is case-sensitive
    # Partial, by hand: "hello there" vs "hello world": matching blocks "hello " (6) and "r" (1), so
    # ratio = 2 * 7 / (11 + 11) = 14/22.
    assert grade(prefix + "hello there", answer, prefix) == pytest.approx(14 / 22)
    assert grade(prefix + "hello there", answer, prefix) == SequenceMatcher(None, "hello there", body).ratio()
    # The prefix comes off both sides before comparing: an answer that kept it would give 2*11/(11+21).
    assert grade(prefix + body, answer, prefix) == 1.0 != SequenceMatcher(None, body, answer).ratio()
    # An empty body after the prefix: ratio 2*0/(0+11) = 0.0, a float (the missing-prefix 0 is the card's int).
    assert grade(prefix, answer, prefix) == 0.0 and isinstance(grade(prefix, answer, prefix), float)
    # Long texts: difflib's autojunk (on for strings over 200 characters) is part of the card's metric.
    long_answer = prefix + "Beneath the quiet harbor of owls, a lantern sways.  \n" * 8
    half = long_answer[: len(long_answer) // 2]
    assert grade(half, long_answer, prefix) == SequenceMatcher(None, half[10:], long_answer[10:]).ratio()


def test_bins_are_the_cards_with_outer_items_in_the_outer_bins():
    assert [hi for _, hi in BINS] == [2 ** k for k in range(13, 21)]
    assert bin_of(4096) == bin_of(8192) == (4096, 8192)          # [4096, 8192] closed
    assert bin_of(8193) == (8192, 16384) and bin_of(16384) == (8192, 16384)  # then (lo, hi]
    assert bin_of(1048576) == (524288, 1048576) and bin_of(524289) == (524288, 1048576)
    assert bin_of(100) == (4096, 8192) and bin_of(2_000_000) == (524288, 1048576)  # outside the edges: outer bins
    assert bin_name((524288, 1048576)) == "bin_524288_1048576"


def test_o200k_base_is_tiktokens_own_encoding_and_a_damaged_copy_is_refused(tmp_path, monkeypatch):
    import inspect

    from tiktoken_ext import openai_public

    pinned = re.search(r'expected_hash="([0-9a-f]{64})"', inspect.getsource(openai_public.o200k_base)).group(1)
    assert hashlib.sha256(lzma.decompress(mrcr.O200K_FILE.read_bytes())).hexdigest() == pinned
    encoding = mrcr.load_o200k_base()
    assert encoding.name == "o200k_base" and encoding.n_vocab == 200019
    assert encoding.encode("hello world") == [24912, 2375]  # o200k ids (cl100k gives [15339, 1917])
    damaged = tmp_path / "o200k_base.tiktoken.xz"
    damaged.write_bytes(lzma.compress(lzma.decompress(mrcr.O200K_FILE.read_bytes()).replace(b" 0\n", b" 1\n", 1), preset=0))
    monkeypatch.setattr(mrcr, "O200K_FILE", damaged)
    mrcr.load_o200k_base.cache_clear()
    try:
        with pytest.raises(DataError, match="damaged"):
            mrcr.load_o200k_base()
    finally:
        mrcr.load_o200k_base.cache_clear()


# ---------------------------------------------------------------------------------------------
# The fixtures and the loader


def rows_of(needles: int) -> list[dict]:
    import pyarrow.parquet as pq

    return [row for path in sorted((FIXTURES / f"{needles}needle").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]


@pytest.mark.parametrize("needles", [2, 8])
def test_fixtures_have_the_real_generators_structure(needles):
    for row in rows_of(needles):
        messages = json.loads(row["prompt"])
        assert messages[0]["role"] == "user" and messages[0]["content"].startswith(
            "Here are some examples of conversations succeeded by a follow-up question answered correctly:")
        assert messages[0]["content"].count("======EXAMPLE======") == 2 == messages[0]["content"].count("======END EXAMPLE======")
        pairs = messages[1:-1]
        assert [m["role"] for m in pairs] == ["user", "assistant"] * (len(pairs) // 2)
        request = messages[row["desired_msg_index"]]["content"]
        assert sum(m["content"] == request for m in pairs[::2]) == row["n_needles"] == needles
        prefix = row["random_string_to_prepend"]
        assert re.fullmatch(r"[A-Za-z0-9]{10}", prefix)
        assert row["answer"] == prefix + messages[row["desired_msg_index"] + 1]["content"]
        which = [i for i in range(1, len(messages) - 1, 2) if messages[i]["content"] == request].index(row["desired_msg_index"])
        assert messages[-1] == {"role": "user", "content": f"Prepend {prefix} to the {make_fixtures.ORDINALS[which]} "
                                f"(1 indexed) {request.removeprefix('write a ')}. Do not include any other text in your response."}
        assert row["total_messages"] == len(messages)


def exact_counts(needles: int) -> list[tuple[int, int]]:
    """(prompt tokens, prompt + answer tokens) of every row, counted the card's way, without the loader."""
    out = []
    for row in rows_of(needles):
        prompt = sum(o200k(m["content"]) for m in json.loads(row["prompt"]))
        out.append((prompt, prompt + o200k(row["answer"])))
    return out


def test_loader_selects_by_needles_and_bins_with_the_cards_count():
    counts = {n: exact_counts(n) for n in (2, 8)}
    for n in (2, 8):
        selection = load_items(FIXTURES, n)
        assert [(d["n_tokens"], d["n_tokens_total"]) for d in selection.items] == counts[n]
        assert [d["bin"] for d in selection.items] == [bin_name(bin_of(total)) for _, total in counts[n]]
        assert {d["n_needles"] for d in selection.items} == {n} and selection.rows == len(counts[n])
        assert all(d["n_tokens_by"] == "o200k_base" for d in selection.items)
    both = load_items(FIXTURES, [2, 8])
    assert len(both.items) == len(counts[2]) + len(counts[8]) == 10
    assert {d["bin"] for d in both.items} == {"bin_4096_8192", "bin_8192_16384", "bin_16384_32768"}
    assert both.outside_edges == 1  # the fixture of ~2,300 tokens, under 4096: counted in the first bin
    first = load_items(FIXTURES, [2, 8], bins=[8192])
    assert {d["bin"] for d in first.items} == {"bin_4096_8192"} and len(first.items) == 7 and first.other_bins == 3
    assert load_items(FIXTURES, 2, bins=[1048576]).items == []


def test_loader_skips_and_counts_what_does_not_fit_the_context():
    counts = exact_counts(2) + exact_counts(8)
    for limit in (3000, 5000, 8000):
        selection = load_items(FIXTURES, [2, 8], max_prompt_tokens=limit)
        assert sorted(d["n_tokens"] for d in selection.items) == sorted(p for p, _ in counts if p <= limit)
        assert selection.too_long == sum(p > limit for p, _ in counts) > 0
        assert f"skipped {selection.too_long} whose prompt is over max_prompt_tokens" in selection.describe()
    with pytest.raises(DataError, match=r"no 4-needle files .*4needle/\*"):
        load_items(FIXTURES, 4)
    with pytest.raises(DataError, match="not among"):
        load_items(FIXTURES, 3)
    with pytest.raises(DataError, match="not among"):
        load_items(FIXTURES, 2, bins=[5000])


def test_without_o200k_base_only_an_explicit_approximation_counts(monkeypatch):
    def unavailable():
        raise OSError("no network")

    monkeypatch.setattr(mrcr, "load_o200k_base", unavailable)
    with pytest.raises(DataError, match="tokenizer=utf8_bytes_div_4"):
        load_items(FIXTURES, 2)
    approx = load_items(FIXTURES, 2, tokenizer="utf8_bytes_div_4")
    assert all(d["n_tokens_by"] == "utf8_bytes_div_4" for d in approx.items) and len(approx.items) == 6


# ---------------------------------------------------------------------------------------------
# The adapter: a task's setting, never prompt text, makes a document a conversation


def test_only_the_tasks_setting_turns_a_document_into_chat_messages():
    from harness.config import ConfigError, ModelConfig
    from harness.endpoints.adapter import EndpointLM

    lm = EndpointLM(endpoint=None, model=ModelConfig(name="m", model_id="m"), cache=None)
    conversation = [{"role": "user", "content": "write a poem about owls"}, {"role": "assistant", "content": "Owls."},
                    {"role": "user", "content": "Prepend Ab12Cd34Ef to the 1st (1 indexed) poem about owls."}]
    text = json.dumps(conversation)
    # Ordinary prompt text that happens to be a JSON list of messages stays one user message.
    plain = lm._chat_request(text, {"until": []})
    assert plain.messages == ({"role": "user", "content": text},)
    as_chat = lm._chat_request(lm.apply_chat_template([{"role": "user", "content": text}]), {"until": []})
    assert as_chat.messages == ({"role": "user", "content": text},)
    # With the task's setting: the dataset's messages, in order; the setting goes nowhere else.
    marked = lm._chat_request(lm.apply_chat_template([{"role": "user", "content": text}]),
                              {"until": [], "max_gen_toks": 99, "harness_context": "chat_messages"})
    assert marked.messages == tuple(conversation) and marked.params == {"max_tokens": 99, "temperature": 0.0}
    lm._chat_applied = False
    assert lm._chat_request(text, {"harness_context": "chat_messages"}).messages == tuple(conversation)
    lm._chat_applied = True
    for context, kwargs in [
        (lm.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]),
         {"harness_context": "chat_messages"}),                       # a system message or few-shot turns added
        (lm.apply_chat_template([{"role": "user", "content": "not JSON"}]), {"harness_context": "chat_messages"}),
        (lm.apply_chat_template([{"role": "user", "content": '[{"role": "robot", "content": "x"}]'}]),
         {"harness_context": "chat_messages"}),
        (lm.apply_chat_template([{"role": "user", "content": text}]), {"harness_context": "messages"}),  # unknown value
    ]:
        with pytest.raises(ConfigError, match="harness_context"):
            lm._chat_request(context, kwargs)


# ---------------------------------------------------------------------------------------------
# End to end: python -m harness against a scripted server


def items_by_prefix() -> dict[str, dict]:
    return {d["random_string_to_prepend"]: d for d in load_items(FIXTURES, [2, 8]).items}


def test_the_conversation_is_sent_as_published_and_the_headline_is_the_mean_grade(tmp_path):
    """Per item (by its random string): exactly right, no prefix, another needle's text (the classic MRCR
    mistake), the right text cut in half, or the right text with a preface; the headline is the mean of
    the card's grades, computed here with difflib itself."""
    items = items_by_prefix()
    order = sorted(items)
    plan = {key: ["right", "no_prefix", "other_needle", "half", "preface"][i % 5] for i, key in enumerate(order)}

    def reply(doc: dict) -> str:
        prefix, body = doc["random_string_to_prepend"], doc["answer"][10:]
        messages = json.loads(doc["prompt"])
        request = messages[doc["desired_msg_index"]]["content"]
        others = [messages[i + 1]["content"] for i in range(1, len(messages) - 1, 2)
                  if messages[i]["content"] == request and i != doc["desired_msg_index"]]
        return {"right": prefix + body, "no_prefix": body, "other_needle": prefix + others[0],
                "half": prefix + body[: len(body) // 2], "preface": "Sure! " + prefix + body}[plan[prefix]]

    def content_fn(payload) -> str:
        prefix = payload["messages"][-1]["content"].split()[1]
        return reply(items[prefix])

    results = tmp_path / "results"
    with FaultServer(content_fn=content_fn, prompt_tokens=6000, completion_tokens=300) as server:
        done = run_harness("model=openai-compatible", f"model.base_url={server.base_url}", "model.model_id=m",
                           "model.concurrency=4", "model.generation.max_tokens=4096", "task=mrcr",
                           f"task.dataset_path={FIXTURES}", "task.loader_kwargs.needles=[2,8]", f"results_dir={results}",
                           "tracking=none", "claims.enabled=false")
        bodies = server.bodies()
    assert done.returncode == 0, done.stderr[-3000:]
    # On the wire: the dataset's messages, as they are, one request per item, no stop sequence.
    assert len(bodies) == len(items) == 10
    for body in bodies:
        doc = items[body["messages"][-1]["content"].split()[1]]
        assert body["messages"] == json.loads(doc["prompt"])
        assert len(body["messages"]) == doc["total_messages"] and "stop" not in body and body["max_tokens"] == 4096
    # The headline: the mean of the card's grade, computed with difflib here.
    def expected(doc: dict) -> float:
        response, prefix = reply(doc), doc["random_string_to_prepend"]
        if not response.startswith(prefix):
            return 0.0
        return SequenceMatcher(None, response.removeprefix(prefix), doc["answer"].removeprefix(prefix)).ratio()

    grades = {key: expected(doc) for key, doc in items.items()}
    assert sorted(set(plan.values())) == ["half", "no_prefix", "other_needle", "preface", "right"]
    assert 0 < min(g for k, g in grades.items() if plan[k] in ("half", "other_needle")) < 1
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["mrcr"]
    assert task["metric"] == "mrcr_ratio" and task["n"] == 10
    assert task["value"] == pytest.approx(sum(grades.values()) / 10)
    for name in ("bin_4096_8192", "bin_8192_16384", "bin_16384_32768"):
        members = [grades[k] for k, d in items.items() if d["bin"] == name]
        assert task["metrics"][name] == pytest.approx(sum(members) / len(members)), name
    for n in (2, 8):
        members = [grades[k] for k, d in items.items() if d["n_needles"] == n]
        assert task["metrics"][f"needles_{n}"] == pytest.approx(sum(members) / len(members))
    assert task["metrics"]["missing_prefix"] == pytest.approx(sum(plan[k] in ("no_prefix", "preface") for k in items) / 10)
    assert "bin_524288_1048576" not in task["metrics"]
    rows = [json.loads(line) for line in next(results.glob("runs/*/samples.jsonl")).open()]
    assert sorted(r["score"] for r in rows) == pytest.approx(sorted(grades.values()))


# ---------------------------------------------------------------------------------------------
# The real local model


def test_smollm2_runs_mrcr_on_the_bins_that_fit_its_context(require_llama, tmp_path):
    """SmolLM2-135M served with an 8192-token context: max_prompt_tokens=3000 keeps the one 2-needle item
    that fits it (the others are skipped and counted); it runs for real and is graded in [0, 1]."""
    results = tmp_path / "results"
    done = run_harness("task=mrcr", f"task.dataset_path={FIXTURES}", "task.loader_kwargs.needles=2",
                       "task.loader_kwargs.max_prompt_tokens=3000", "model.generation.max_tokens=16",
                       "model.server.extra_args=[--n_ctx,8192,--n_threads,2,--seed,1234]", f"results_dir={results}",
                       "tracking=none", "claims.enabled=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped 5 whose prompt is over max_prompt_tokens" in done.stdout
    summary = json.loads(next(results.glob("runs/*/summary.json")).read_text())
    task = summary["tasks"]["mrcr"]
    assert task["n"] == 1 and 0.0 <= task["value"] <= 1.0
    assert set(k for k in task["metrics"] if k.startswith("bin_")) == {"bin_4096_8192"}
    assert summary["usage"]["input_tokens"] > 2000 and summary["usage"]["output_tokens"] > 0
    assert summary["complete"] is True and summary["cost_usd"] == 0.0


# ---------------------------------------------------------------------------------------------
# The 1M bin: what a check would cost, before anything is sent


def test_dry_run_of_the_1m_bin_prints_its_tokens_and_dollars_before_sending(tmp_path, monkeypatch):
    """One item of ~600k tokens (prompt + answer) in the hub's layout, made here: V4-Flash's dry run, no key."""
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    data = tmp_path / "openai" / "mrcr"
    row = make_fixtures.build_item(8001, 8, 600_000, lambda text: o200k(text))
    make_fixtures.write_parquet([row], data / "8needle" / "8needle_0.parquet")
    messages = json.loads(row["prompt"])
    held = sum(o200k(m["content"]) for m in messages)  # the prompt tokens the item holds (o200k_base)
    prompt_bytes = sum(len(m["content"].encode()) for m in messages)
    results = tmp_path / "results"
    done = run_harness("model=v4-flash", "task=mrcr_1m", f"task.dataset_path={data}", "dry_run=true",
                       f"results_dir={results}", "tracking=none", "claims.enabled=false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nothing was sent" in done.stdout and "bin_524288_1048576: 1" in done.stdout
    found = re.search(r"estimate: (\d+) input \+ (\d+) output tokens = \$([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:]
    printed_in, printed_out, dollars = int(found[1]), int(found[2]), float(found[3])
    # No earlier run: prompt tokens = UTF-8 bytes / 4 (harness.spend.dry_run). That reads this item (o200k:
    # ~4.9 bytes per token) as ~20% more tokens than it holds; within 25%, and never fewer.
    assert printed_in == round(prompt_bytes / 4)
    assert 1.0 <= printed_in / held <= 1.25, (printed_in, held)
    assert printed_out == 8192  # v4-flash's max_tokens: the upper bound on output
    from harness.spend.price_book import load_book

    rates = load_book().schedule("deepseek-v4-flash").rates_at(dt.datetime.now(dt.timezone.utc))[0]
    assert dollars == pytest.approx((printed_in * rates.input_per_mtok + printed_out * rates.output_per_mtok) / 1e6,
                                    rel=1e-3, abs=1e-4)
    input_dollars = held * rates.input_per_mtok / 1e6
    assert input_dollars <= dollars <= input_dollars * 1.35
