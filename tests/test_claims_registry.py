"""The claims registry (conf/claims/): every number of the five source articles once, sources dated, model and
task names that exist; the loader's refusals (duplicate ids, scores outside [0, 100], facts in a wrong unit,
ratings with a task); and how claims no run judges (model facts, ratings, scores without a task) read in
`python -m harness.claims list`, the board and a run's claims report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.claims.__main__ import main
from harness.claims.board import build_board, render_board
from harness.claims.display import claimed_text, counts_line
from harness.claims.registry import MODEL_FACT, NO_TASK, UNKNOWN, load_claims
from harness.claims.report import render_markdown, write_report
from harness.claims.verdicts import judge
from harness.common.stats import mean_estimate
from harness.config import ConfigError, GenerationConfig, ModelConfig, RunConfig, TaskConfig

ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}
TASK_CONFIGS = {p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")}
PENDING_TASKS: set[str] = set()  # task names claims may use before their config lands

# Claims per file, by article (shared/articles/, not read here: a fresh clone has no ../shared):
#   000 news report (540B V4):     MMLU, Humanities-X 2 + 540B, $5.6M, 16,000 GPUs, 2x V3 efficiency 4       =  6
#   001 DailyTechWire 2026-05-25:  seeded 12 + 19 facts (671B, 37B, $8.2M, 14.8T, 2,048 GPUs, ...) + o3 AIME + Opus 5 / GPT-5 output prices = 34
#   002 V4 preview coverage (May): 32 (sizes, context, tokens, ratios, prices, promo, LCB, Codeforces,
#                                  SWE-bench Verified, Terminal-Bench, NIST findings, R1's release month)
#   003 launch analysis (April):   table 11 + 18 (Codeforces 3, SWE-Bench Pro 4, Terminal-Bench 4, MRCR 3,
#                                  Apex 4) + MMMLU, C-Eval 2 = 31; prices 8; facts 16                           = 55
#   004 explainer (undated):       Pro/Flash sizes and tokens 6 + context 1                                     =  7
EXPECTED_PER_FILE = {"v4-release-news.yaml": 6, "dailytechwire-2026-05-25.yaml": 34,
                     "v4-preview-coverage-2026-05.yaml": 32, "deepseek-v4-table-2026-04.yaml": 31,
                     "release-pricing-2026-04.yaml": 8, "deepseek-v4-release-facts-2026-04.yaml": 16,
                     "v4-explainer.yaml": 7}

ISO_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def one(claims, **fields):
    found = [c for c in claims if all(getattr(c, k) == v for k, v in fields.items())]
    assert len(found) == 1, f"{fields}: {len(found)} claims"
    return found[0]


def test_every_number_is_one_claim(claims):
    assert Counter(c.file for c in claims) == EXPECTED_PER_FILE
    assert len({c.id for c in claims}) == len(claims)
    # Never the same number twice from one source about one model and quantity.
    keys = Counter((c.source.publication, c.source.date, c.model_as_named, c.benchmark, c.metric, c.value, c.bound,
                    c.relative_to) for c in claims)
    assert [k for k, n in keys.items() if n > 1] == []


def test_every_claim_has_a_source_publication_and_date(claims):
    for c in claims:
        assert c.source.publication.strip() and c.source.publication != UNKNOWN, c.id
        assert c.source.date.strip(), c.id
        assert ISO_DATE.match(c.source.date) or c.source.date == UNKNOWN, c.id
    # The news report and the explainer give no date; every other source is dated.
    undated = {c.file for c in claims if c.source.date == UNKNOWN}
    assert undated == {"v4-release-news.yaml", "v4-explainer.yaml"}


def test_models_and_tasks_name_existing_configs(claims):
    for c in claims:
        assert c.model is None or c.model in MODEL_CONFIGS, f"{c.id}: no conf/model/{c.model}.yaml"
        assert c.task is None or c.task in TASK_CONFIGS | PENDING_TASKS, f"{c.id}: no conf/task/{c.task}.yaml"
        assert c.model_as_named.strip(), c.id
        if c.model is None:
            assert c.notes.strip(), f"{c.id}: model null needs a reason in notes"


def test_units_and_kinds(claims):
    for c in claims:
        if c.kind == "price":
            assert (c.benchmark, c.unit, c.task) == ("price", "usd_per_mtok", None), c.id
        if c.kind == "speed":
            assert (c.benchmark, c.task) == ("speed", None), c.id
        if c.kind == "score" and c.benchmark == "MMLU-Pro":
            assert c.task == "mmlu_pro_official", c.id
        if c.kind == "score" and c.benchmark == "MRCR 1M":
            assert c.task == "mrcr_1m" and "8 needles" in c.notes, c.id
        if c.kind == "score" and c.benchmark == "Codeforces":
            assert (c.unit, c.metric, c.task) == ("rating", "rating", None), c.id
        if c.kind == "fact":
            assert (c.benchmark, c.task, c.no_run_status) == ("fact", None, MODEL_FACT), c.id


def test_spot_checks(claims):
    dtw = one(claims, id="dtw-2026-05-25-deepseek-v4-mmlu-pro")
    assert (dtw.value, dtw.model_as_named, dtw.model, dtw.source.date) == (94.3, "DeepSeek V4 (671B)", None, "2026-05-25")
    assert dtw.source.provenance == "DTW benchmark notebook"

    v4_pro_max = one(claims, model_as_named="DeepSeek V4-Pro-Max", benchmark="MMLU-Pro")
    gpt = one(claims, model_as_named="GPT-5.5 (xHigh)", benchmark="MMLU-Pro")
    assert v4_pro_max.value == gpt.value == 87.5
    assert (v4_pro_max.model, v4_pro_max.protocol.reasoning) == ("v4-pro", "max")
    assert (gpt.model, gpt.protocol.reasoning) == ("gpt-5.5", "xhigh")

    dtw_price = {c.metric: c.value for c in claims
                 if c.kind == "price" and c.model_as_named == "DeepSeek V4" and c.source.publication == "DailyTechWire"}
    assert dtw_price == {"input": 0.07, "output": 0.27}

    ttft = one(claims, kind="speed", metric="time_to_first_token")
    assert (ttft.value, ttft.unit, ttft.protocol.subset) == (1124, "ms", "demo")
    tps = one(claims, kind="speed", metric="output_tokens_per_s")
    assert (tps.value, tps.unit, tps.protocol.subset) == (312, "tokens_per_s", "demo")

    kv = one(claims, id="deepseek-release-2026-04-v4-pro-kv-cache-vs-v3-2")
    assert (kv.value, kv.unit, kv.relative_to, claimed_text(kv)) == (10, "percent", "DeepSeek-V3.2", "10% of DeepSeek-V3.2")
    assert one(claims, id="dtw-2026-05-25-deepseek-v4-release-date").value == "2026-05-24"


def test_the_numbers_issue_15_names(claims):
    """The numbers #15 names: the Codeforces ratings, MRCR 1M (wired to mrcr_1m), SWE-bench Verified, and the
    parameter counts and context length the sources disagree or agree on."""
    def values(**fields):
        return sorted(c.value for c in claims if all(getattr(c, k) == v for k, v in fields.items()))

    codeforces = {(c.model_as_named, c.value) for c in claims if c.benchmark == "Codeforces"}
    assert {v for _, v in codeforces} == {3206, 3168, 3052}
    assert ("Gemini 3.1 Pro (High)", 3052) in codeforces and ("GPT-5.5 (xHigh)", 3168) in codeforces
    mrcr = {c.model: c.value for c in claims if c.benchmark == "MRCR 1M" and c.task == "mrcr_1m"}
    assert mrcr == {"v4-pro": 83.5, "claude-opus-4.7": 92.9, "gemini-3.1-pro": 76.3}
    swe = {c.model: c.value for c in claims if c.benchmark == "SWE-bench Verified"}
    assert swe == {"v4-pro": 80.6, "claude-opus-4.7": 80.8}
    totals = set(values(kind="fact", metric="total_parameters"))
    assert {540e9, 671e9, 1.6e12} <= totals
    assert one(claims, kind="fact", metric="total_parameters", value=540e9).model_as_named == "DeepSeek V4 (540B)"
    assert 1_000_000 in values(kind="fact", metric="context_length", model="v4-pro")


CLAIM = """\
  - id: {id}
    kind: score
    model_as_named: "Some Model"
    benchmark: MMLU-Pro
    value: {value}
    unit: percent
    source: {{publication: "Somewhere", date: "2026-01-01"}}
"""
FACT = """\
  - id: {id}
    kind: fact
    model_as_named: "Some Model"
    model: v4-pro
    benchmark: fact
    metric: {metric}
    value: {value}
    unit: {unit}
    source: {{publication: "Somewhere", date: "2026-01-01"}}
"""
RATING = """\
  - id: {id}
    kind: score
    model_as_named: "Some Model"
    model: v4-pro
    benchmark: Codeforces
    task: {task}
    metric: rating
    value: 3206
    unit: rating
    source: {{publication: "Somewhere", date: "2026-01-01"}}
"""


def write(tmp_path: Path, *claims: str) -> Path:
    (tmp_path / "a.yaml").write_text("claims:\n" + "".join(claims))
    return tmp_path


def test_loader_refuses_a_duplicate_id(tmp_path):
    (tmp_path / "a.yaml").write_text("claims:\n" + CLAIM.format(id="same-id", value=50))
    (tmp_path / "b.yaml").write_text("claims:\n" + CLAIM.format(id="same-id", value=60))
    with pytest.raises(ConfigError, match="same-id"):
        load_claims(tmp_path)


def test_loader_refuses_a_duplicate_id_within_one_file(tmp_path):
    (tmp_path / "a.yaml").write_text("claims:\n" + CLAIM.format(id="twice", value=50) + CLAIM.format(id="twice", value=60))
    with pytest.raises(ConfigError, match="twice"):
        load_claims(tmp_path)


@pytest.mark.parametrize("value", [100.1, -0.5, 943])
def test_loader_refuses_a_score_outside_0_100(tmp_path, value):
    (tmp_path / "a.yaml").write_text("claims:\n" + CLAIM.format(id="bad-score", value=value))
    with pytest.raises(ConfigError, match=r"\[0, 100\]"):
        load_claims(tmp_path)


def test_loader_accepts_the_bounds(tmp_path):
    (tmp_path / "a.yaml").write_text("claims:\n" + CLAIM.format(id="zero", value=0) + CLAIM.format(id="hundred", value=100))
    assert [c.value for c in load_claims(tmp_path)] == [0, 100]


def test_facts_load_in_their_units(tmp_path):
    loaded = load_claims(write(tmp_path, FACT.format(id="size", metric="total_parameters", value=1600000000000,
                                                     unit="parameters"),
                               FACT.format(id="ctx", metric="context_length", value=1000000, unit="tokens"),
                               FACT.format(id="day", metric="release_date", value="2026-04-24", unit="date")))
    assert [claimed_text(c) for c in loaded] == ["1.6T parameters", "1M tokens", "2026-04-24"]
    assert all(c.no_run_status == MODEL_FACT and not c.checkable and not c.measured_by_runs for c in loaded)


@pytest.mark.parametrize(("metric", "value", "unit", "says"), [
    ("total_parameters", 1600000000000, "billion_parameters", "unit is parameters"),  # a unit not of the metric
    ("total_params", 1600000000000, "parameters", "a fact's metric is one of"),  # no such metric
    ("total_parameters", 1.6, "parameters", "out of range for total_parameters"),  # 1.6 meant as 1.6T
    ("training_cost", "5.6M", "usd", "plain number"),  # a number with a suffix
    ("release_date", "April 24", "date", "YYYY-MM-DD"),
    ("kv_cache_ratio", 10, "percent", "set relative_to"),  # a ratio must say to what
])
def test_a_fact_in_a_wrong_unit_or_metric_is_refused_naming_file_and_claim(tmp_path, metric, value, unit, says):
    write(tmp_path, FACT.format(id="bad-fact", metric=metric, value=value, unit=unit))
    with pytest.raises(ConfigError, match=f"a.yaml: claim bad-fact: .*{says}"):
        load_claims(tmp_path)


def test_a_rating_with_a_task_is_refused_and_without_one_says_no_task(tmp_path):
    write(tmp_path, RATING.format(id="cf", task="livecodebench"))
    with pytest.raises(ConfigError, match="a.yaml: claim cf: a rating is no percentage and no task yields one"):
        load_claims(tmp_path)
    [rating] = load_claims(write(tmp_path, RATING.format(id="cf", task="null")))
    assert (rating.no_run_status, claimed_text(rating), rating.measured_by_runs) == (NO_TASK, "3,206 rating", False)


def test_a_score_takes_no_bound_but_roughly(tmp_path):
    write(tmp_path, CLAIM.format(id="bounded", value=50).replace("unit: percent", "unit: percent\n    bound: '<'"))
    with pytest.raises(ConfigError, match="claim bounded: bound .*only '=' or '~'"):
        load_claims(tmp_path)


def _run_cfg(model: str, task: str, benchmark: str) -> RunConfig:
    return RunConfig(model=ModelConfig(name=model, model_id=model, thinking=True,
                                       generation=GenerationConfig(temperature=0.0, reasoning_effort="max")),
                     task=TaskConfig(name=task, lm_eval_task=task, benchmark=benchmark))


def _run_summary(model: str, task: str, k: int, n: int) -> dict:
    e = mean_estimate([1] * k + [0] * (n - k))
    return {"run_id": f"20260520T100000Z-{model}-{task}-abcdef", "model": model, "task": task, "complete": True,
            "endpoint": {"model_id": model}, "mlflow_run_id": None, "cost_usd": 0.5,
            "tasks": {task: {"value": e.value, "ci95": list(e.ci95), "n": n, "cost_usd": 0.5}},
            "dataset": {task: {"n_docs": n}}}


def test_no_run_judges_a_rating_or_a_fact_even_on_their_benchmark(claims):
    """A run whose task says benchmark "Codeforces" (or "fact") would otherwise judge 3,206 as a percentage."""
    summary = _run_summary("v4-pro", "codeforces", 40, 50)
    assert any(c.model == "v4-pro" and c.unit == "rating" for c in claims)
    for benchmark in ("Codeforces", "fact"):
        verdicts = judge(claims, _run_cfg("v4-pro", "codeforces", benchmark), summary)
        assert verdicts and {v.kind for v in verdicts} == {"price"}  # the model's prices, as any run of it


def test_the_list_prints_every_claim_with_what_checks_it_and_the_counts(claims):
    shown = subprocess.run([sys.executable, "-m", "harness.claims", "list"], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[-1]: line for line in shown.stdout.splitlines() if line.startswith("  ")}
    for c in claims:
        assert c.id in lines, c.id
        line = lines[c.id]
        assert claimed_text(c) in line and c.model_as_named in line
        if c.kind == "fact":
            assert "model fact" in line, line
        elif not c.checkable:
            assert " no task " in line, line
        else:
            assert " no task " not in line and (c.task or "") in line, line
    kinds = Counter(c.kind for c in claims)
    with_task = sum(1 for c in claims if c.kind == "score" and c.task)
    assert shown.stdout.rstrip().endswith(
        f"{len(claims)} claims: {kinds['score']} score ({with_task} with a task), {kinds['price']} price, "
        f"{kinds['speed']} speed, {kinds['fact']} fact")
    # Grouped by source: one heading per (publication, date).
    assert sum(1 for line in shown.stdout.splitlines() if re.match(r"^\S.*\(\d+ claims, conf/claims/", line)) == len(
        {(c.source.publication, c.source.date) for c in claims})


def test_the_list_of_another_registry_and_an_invalid_one(tmp_path, capsys):
    write(tmp_path, CLAIM.format(id="s", value=50), RATING.format(id="r", task="null"),
          FACT.format(id="f", metric="context_length", value=1000000, unit="tokens"))
    assert main(["list", "--claims-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("3 claims: 2 score (0 with a task), 1 fact")
    assert counts_line(load_claims(tmp_path)) == "3 claims: 2 score (0 with a task), 1 fact"
    write(tmp_path, FACT.format(id="f", metric="context_length", value=1, unit="tokens"))
    with pytest.raises(SystemExit, match="registry is invalid: a.yaml: claim f: "):
        main(["list", "--claims-dir", str(tmp_path)])


def test_the_board_shows_facts_and_ratings_as_not_judged(claims):
    board = build_board(claims, [])
    status = {row.claim.id: row.status for row in board.rows}
    for c in claims:
        if c.kind == "fact":
            assert status[c.id] == MODEL_FACT, c.id
        if c.unit == "rating":
            assert status[c.id] == NO_TASK, c.id
    page = render_board(board)
    assert page.count("<tr id='claim-") == len(claims)
    assert "3,206 rating" in page and "1.6T parameters" in page and "10% of DeepSeek-V3.2" in page
    assert f">{MODEL_FACT}</span><b>{sum(1 for c in claims if c.kind == 'fact')}</b>" in page
    # The sources' parameter counts for "DeepSeek V4" stand side by side, each number once in the heading;
    # V4-Pro's 1.6T and V4-Flash's 284B alone (two of our models) are no contradiction.
    [sizes] = [g for g in board.contradictions() if g[0].claim.metric == "total_parameters"]
    heading = page.split("<h3>fact (total parameters)")[1].split("</h3>")[0]
    for text in ("1.6T parameters", "671B parameters", "540B parameters"):
        assert heading.count(text) == 1 and text in {claimed_text(r.claim) for r in sizes}
    assert "points apart" not in heading
    pro_and_flash = [r for r in board.rows if r.claim.metric == "total_parameters" and r.claim.model]
    assert {r.claim.model for r in pro_and_flash} == {"v4-pro", "v4-flash"}
    assert build_board([r.claim for r in pro_and_flash], []).contradictions() == []


def test_a_runs_claims_report_lists_what_no_run_judges_about_its_model(tmp_path, claims, capsys):
    summary = _run_summary("v4-pro", "codeforces", 40, 50)
    summary["claims"] = [v.to_dict() for v in judge(claims, _run_cfg("v4-pro", "codeforces", "Codeforces"), summary)]
    folder = tmp_path / "runs" / summary["run_id"]
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    written = write_report(summary, folder)  # the registry of the run's config; none here: conf/claims
    md = (folder / "claims.md").read_text()
    about = [c for c in claims if c.model == "v4-pro" and c.no_run_status]
    assert about and f"{len(about)} claim(s) in the registry about `v4-pro` that no run measures" in md
    for c in about:
        row = next(line for line in md.splitlines() if line.startswith(f"| {c.id} |"))
        assert f"| {c.no_run_status} |" in row and claimed_text(c) in row
    assert "| 3,206 rating | no task |" in md and "| 1.6T parameters | model fact (no task) |" in md
    assert "Not judged by any run" in (folder / "claims.html").read_text() and len(written) == 2  # no score: no PNG
    assert "Not judged" not in render_markdown(summary)  # only when the registry's claims are given
    assert main([str(folder)]) == 0 and "| 3,206 rating | no task |" in capsys.readouterr().out
