"""The seeded claims registry (conf/claims/): every published number once, sources dated, model and
task names that exist, and the loader's refusals (duplicate ids, scores outside [0, 100])."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.claims.registry import UNKNOWN, load_claims
from harness.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = {p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")}
TASK_CONFIGS = {p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")}

# Numbers in the seeding table, row by row:
#   DailyTechWire 2026-05-25: V4 MMLU-Pro 1 + GSM8K 1 + AIME 2025 1 + five others' MMLU-Pro 5
#                             + V4 price in/out 2 + V4 speed ttft/tokens-per-s 2          = 12
#   news report:              V4 (540B) MMLU 1 + Humanities-X 1                           =  2
#   DeepSeek table 2026-04:   MMLU-Pro 1 + 3, LiveCodeBench 3, GPQA Diamond 4              = 11
#   same release coverage:    V4-Pro MMMLU 1 + C-Eval 1                                   =  2
#   release pricing 2026-04:  V4-Flash 2 + V4-Pro 2 + GPT-5.5 2 + Claude Opus 4.7 2        =  8
EXPECTED_CLAIMS = 35  # 12 + 2 + 11 + 2 + 8

ISO_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


@pytest.fixture(scope="module")
def claims():
    return load_claims()


def one(claims, **fields):
    found = [c for c in claims if all(getattr(c, k) == v for k, v in fields.items())]
    assert len(found) == 1, f"{fields}: {len(found)} claims"
    return found[0]


def test_every_number_is_one_claim(claims):
    assert len(claims) == EXPECTED_CLAIMS
    assert len({c.id for c in claims}) == len(claims)


def test_every_claim_has_a_source_publication_and_date(claims):
    for c in claims:
        assert c.source.publication.strip() and c.source.publication != UNKNOWN, c.id
        assert c.source.date.strip(), c.id
        assert ISO_DATE.match(c.source.date) or c.source.date == UNKNOWN, c.id
    # Only the news report gives no date; every other source is dated.
    undated = {c.file for c in claims if c.source.date == UNKNOWN}
    assert undated == {"v4-release-news.yaml"}


def test_models_and_tasks_name_existing_configs(claims):
    for c in claims:
        assert c.model is None or c.model in MODEL_CONFIGS, f"{c.id}: no conf/model/{c.model}.yaml"
        assert c.task is None or c.task in TASK_CONFIGS, f"{c.id}: no conf/task/{c.task}.yaml"
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


CLAIM = """\
  - id: {id}
    kind: score
    model_as_named: "Some Model"
    benchmark: MMLU-Pro
    value: {value}
    unit: percent
    source: {{publication: "Somewhere", date: "2026-01-01"}}
"""


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
