"""The price book: dated periods, cache-hit / time-of-day / batch / long-context rates, billing by the
time a response completed (piecewise across a boundary), and the book's own checks."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.common.exchange import Usage
from harness.config import ConfigError, PricingConfig
from harness.spend.price_book import PRICES_DIR, load_book, schedule_for
from tests.conftest import PROJECT_ROOT, run_harness, write_gsm8k
from tests.fault_server import FaultServer

UTC = dt.timezone.utc


def source(used: bool = True) -> dict:
    return {"url": "https://example.test/pricing", "title": "t", "retrieved": "2026-11-30", "kind": "observed",
            "used": used, "says": "..."}


def write_book(folder: Path, periods: list[dict], model: str = "m-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in periods:
        p.setdefault("sources", [source()])
    (folder / "fake.yaml").write_text(yaml.safe_dump({"provider": "fake", "models": {model: {"periods": periods}}}))
    return folder


def two_periods(tmp_path: Path) -> Path:
    """A launch price, then a 75% promotion with an off-peak window that wraps midnight."""
    return write_book(tmp_path / "book", [
        {"id": "launch", "effective_from": "2026-04-24T00:00:00Z", "effective_to": "2026-05-05T16:00:00Z",
         "input_per_mtok": 1.74, "cached_input_per_mtok": 0.145, "output_per_mtok": 3.48, "batch_discount": None},
        {"id": "promo", "effective_from": "2026-05-05T16:00:00Z", "effective_to": None,
         "input_per_mtok": 0.435, "cached_input_per_mtok": 0.03625, "output_per_mtok": 0.87, "batch_discount": 0.5,
         "windows": [{"name": "off-peak", "start_utc": "16:30", "end_utc": "00:30", "input_per_mtok": 0.2,
                      "output_per_mtok": 0.4}],
         "long_context": {"above_input_tokens": 1000, "input_per_mtok": 9.0, "output_per_mtok": 18.0}}])


def test_a_response_is_billed_at_the_period_and_window_in_force_when_it_completed(tmp_path):
    schedule = load_book(two_periods(tmp_path)).schedule("m-1")
    usage = Usage(input_tokens=100, cached_input_tokens=40, output_tokens=10)
    # Launch: 60 misses at 1.74, 40 hits at 0.145, 10 out at 3.48.
    launch = schedule.quote(usage, dt.datetime(2026, 5, 5, 15, 59, 59, tzinfo=UTC))
    assert (launch.period, launch.window) == ("launch", "")
    assert launch.cost_usd == pytest.approx((60 * 1.74 + 40 * 0.145 + 10 * 3.48) / 1e6)
    # One second later the promotion is in force ("to" is exclusive).
    promo = schedule.quote(usage, dt.datetime(2026, 5, 5, 16, 0, 0, tzinfo=UTC))
    assert promo.period == "promo" and promo.cost_usd == pytest.approx((60 * 0.435 + 40 * 0.03625 + 10 * 0.87) / 1e6)
    # Off-peak from 16:30 to 00:30 (wrapping midnight); a null window price falls back to the period's.
    for hour, minute, window in [(16, 29, ""), (16, 30, "off-peak"), (23, 59, "off-peak"), (0, 29, "off-peak"),
                                 (0, 30, "")]:
        quote = schedule.quote(usage, dt.datetime(2026, 6, 2, hour, minute, tzinfo=UTC))
        assert quote.window == window, (hour, minute)
    night = schedule.quote(usage, dt.datetime(2026, 6, 2, 23, 0, tzinfo=UTC))
    assert night.cost_usd == pytest.approx((60 * 0.2 + 40 * 0.03625 + 10 * 0.4) / 1e6)
    assert night.label == "promo · off-peak"
    # Batch: half of the standard price; the launch period had no batch API, so batch there is refused.
    batch = schedule.quote(usage, dt.datetime(2026, 6, 2, 12, 0, tzinfo=UTC), batch=True)
    assert batch.cost_usd == pytest.approx(promo.cost_usd / 2) and batch.label == "promo · batch"
    with pytest.raises(ConfigError, match="no batch price"):
        schedule.quote(usage, dt.datetime(2026, 5, 1, tzinfo=UTC), batch=True)
    # A prompt over the long-context threshold is billed at the long-context rates, whole request.
    long = schedule.quote(Usage(input_tokens=2000, output_tokens=10), dt.datetime(2026, 6, 2, 12, tzinfo=UTC))
    assert long.long_context and long.cost_usd == pytest.approx((2000 * 9.0 + 10 * 18.0) / 1e6)
    # Before the book starts: the nearest period, and the schedule says it is outside.
    early = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.period_at(early).id == "launch" and not schedule.in_book(early)


def test_the_worst_rates_and_the_next_off_peak_window(tmp_path):
    schedule = load_book(two_periods(tmp_path)).schedule("m-1")
    worst = schedule.worst_rates()
    assert (worst.input_per_mtok, worst.output_per_mtok) == (9.0, 18.0)  # the long-context tier
    assert schedule.worst_rates(prompt_tokens=500).output_per_mtok == 3.48  # a prompt that cannot reach it
    opens, closes, _ = schedule.next_window_start("off-peak", dt.datetime(2026, 6, 2, 12, 0, 30, tzinfo=UTC))
    assert (opens, closes) == (dt.datetime(2026, 6, 2, 16, 30, tzinfo=UTC), dt.datetime(2026, 6, 3, 0, 30, tzinfo=UTC))
    inside = dt.datetime(2026, 6, 2, 20, 0, 5, tzinfo=UTC)
    assert schedule.next_window_start("off-peak", inside)[0] == inside  # open now: no wait
    # The launch period has no window: from there, the first one is the promotion's first evening.
    assert schedule.next_window_start("off-peak", dt.datetime(2026, 5, 1, tzinfo=UTC))[0] == \
        dt.datetime(2026, 5, 5, 16, 30, tzinfo=UTC)


@pytest.mark.parametrize("change, message", [
    (lambda ps: ps[1].update(effective_from="2026-05-01T00:00:00Z"), "overlap or are out of order"),
    (lambda ps: ps[0].update(sources=[source(used=False)]), "exactly one source must be marked used"),
    (lambda ps: ps[0].update(output_per_mtok=-1), "non-negative"),
    (lambda ps: ps[0].update(output_per_mtok="3.48$"), "non-negative"),
    (lambda ps: ps[1].update(batch_discount=50), "fraction off"),
    (lambda ps: ps[0].update(effective_from="May 5th"), "not a date"),
    (lambda ps: ps[0].pop("input_per_mtok"), "input_per_mtok is missing"),
    (lambda ps: ps[0]["sources"][0].update(kind="rumoured"), "source kind"),
])
def test_a_wrong_book_entry_is_refused_naming_the_file_and_period(tmp_path, change, message):
    book = yaml.safe_load((two_periods(tmp_path) / "fake.yaml").read_text())
    change(book["models"]["m-1"]["periods"])
    (tmp_path / "book" / "fake.yaml").write_text(yaml.safe_dump(book))
    with pytest.raises(ConfigError, match=message) as raised:
        load_book(tmp_path / "book")
    assert "fake.yaml" in str(raised.value)


def test_inline_prices_beside_a_book_are_refused_and_unknown_books_name_the_known_ones(tmp_path):
    folder = str(two_periods(tmp_path))
    with pytest.raises(ConfigError, match="model.pricing.book=null"):
        schedule_for(PricingConfig(book="m-1", book_dir=folder, input_per_mtok=1.0))
    with pytest.raises(ConfigError, match="has: m-1"):
        schedule_for(PricingConfig(book="m-2", book_dir=folder))
    inline = schedule_for(PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0, source="my contract"))
    quote = inline.quote(Usage(input_tokens=10, output_tokens=5), dt.datetime.now(UTC))
    assert quote.cost_usd == pytest.approx(20 / 1e6) and quote.period == "config"


def test_the_shipped_book_loads_and_every_model_config_pointing_at_it_resolves():
    book = load_book()
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (PROJECT_ROOT / "conf" / "model").glob("*.yaml")}
    pointing = {name: c["pricing"]["book"] for name, c in configs.items() if (c.get("pricing") or {}).get("book")}
    assert {"v4-flash", "v4-pro", "gpt-5.5", "claude-opus-4.7", "gemini-3.1-pro"} <= set(pointing)
    now = dt.datetime.now(UTC)
    for name, book_id in pointing.items():
        schedule = book.schedule(book_id)
        assert schedule.in_book(now), f"{name}: no period of {book_id} is in force today"
        for period in schedule.periods:
            assert period.used_source is not None and period.used_source.url, (name, period.id)


def test_the_prices_command_prints_the_book_and_the_period_in_force_on_a_date(tmp_path):
    folder = two_periods(tmp_path)
    shown = subprocess.run([sys.executable, "-m", "harness.prices", "m-1", "--dir", str(folder),
                            "--at", "2026-06-02T23:00:00Z"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "promo" in shown.stdout and "launch" not in shown.stdout and "window off-peak" in shown.stdout
    everything = subprocess.run([sys.executable, "-m", "harness.prices", "--dir", str(folder)], cwd=PROJECT_ROOT,
                                capture_output=True, text=True)
    assert "launch" in everything.stdout and "promo" in everything.stdout and "https://example.test" in everything.stdout
    wrong = subprocess.run([sys.executable, "-m", "harness.prices", "nope", "--dir", str(folder)], cwd=PROJECT_ROOT,
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "nor a price-book id (m-1)" in wrong.stderr and "v4-flash" in wrong.stderr
    missing = subprocess.run([sys.executable, "-m", "harness.prices", "--dir", str(tmp_path / "nowhere")],
                             cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "no such folder" in missing.stderr


# ----------------------------------------------------------------------------------- whole runs

N_DOCS = 30


@pytest.fixture
def gsm8k_docs(tmp_path) -> Path:
    rows = [(f"Question {i}: what is {i} plus {i}?", f"#### {2 * i}") for i in range(N_DOCS)]
    return write_gsm8k(tmp_path / "data", test=rows)


def run_args(server: FaultServer, data: Path, results: Path, *extra: str) -> list[str]:
    return ["model=v4-flash", f"model.base_url={server.base_url}", "task=gsm8k", f"task.dataset_path={data}",
            "task.dataset_sha256=null", "task.num_fewshot=0", f"results_dir={results}", "tracking=none",
            "claims.enabled=false", "model.stream=false", *extra]


@pytest.mark.timeout(300)
def test_a_v4_flash_run_reporting_cache_hits_is_billed_at_the_books_cache_hit_price(tmp_path, gsm8k_docs):
    # DeepSeek reports prompt_cache_hit_tokens / prompt_cache_miss_tokens beside prompt_tokens.
    with FaultServer(prompt_tokens=100, completion_tokens=10,
                     usage_extra={"prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 20}) as server:
        result = run_harness(*run_args(server, gsm8k_docs, tmp_path / "results", "limit=5"),
                             env={"DEEPSEEK_API_KEY": "sk-test"})
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("runs/*/summary.json")]
    # Hand arithmetic from the book's own file, for the period in force now (read here without our loader).
    entry = yaml.safe_load((PRICES_DIR / "deepseek.yaml").read_text())["models"]["deepseek-v4-flash"]["periods"]
    now = dt.datetime.now(UTC)
    (period,) = [p for p in entry if dt.datetime.fromisoformat(p["effective_from"].replace("Z", "+00:00")) <= now
                 and (p["effective_to"] is None or now < dt.datetime.fromisoformat(p["effective_to"].replace("Z", "+00:00")))]
    assert period["cached_input_per_mtok"] is not None and period["cached_input_per_mtok"] < period["input_per_mtok"]
    (used,) = summary["prices_used"]
    rates = period
    if " · " in used["price"]:  # answered inside one of the period's time-of-day windows
        window = next(w for w in period["windows"] if w["name"] == used["price"].split(" · ")[1])
        rates = {k: window.get(k) if window.get(k) is not None else period[k] for k in period}
    expected = 5 * (20 * rates["input_per_mtok"] + 80 * rates["cached_input_per_mtok"] + 10 * rates["output_per_mtok"]) / 1e6
    assert summary["cost_usd"] == pytest.approx(expected)
    at_full_input = 5 * (100 * rates["input_per_mtok"] + 10 * rates["output_per_mtok"]) / 1e6
    assert summary["cost_usd"] < at_full_input  # what the old config billed
    assert used["price"].startswith(period["id"]) and used["cached_input_tokens"] == 400
    assert summary["pricing"]["book"] == "deepseek-v4-flash"
    assert [p["id"] for p in summary["pricing"]["periods"]] == [period["id"]]
    assert summary["pricing"]["periods"][0]["source"]["url"]


@pytest.mark.timeout(300)
def test_a_run_crossing_a_window_boundary_is_billed_piecewise(tmp_path, gsm8k_docs):
    """A window opening 12 s after the run starts, at a tenth of the price; 30 answers 0.6 s apart at
    concurrency 1 span it. Each side is billed at its own rate: checked by hand arithmetic."""
    boundary = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=12)
    end = boundary + dt.timedelta(hours=1)
    book = write_book(tmp_path / "book", [
        {"id": "flat", "effective_from": "2026-01-01T00:00:00Z", "effective_to": None,
         "input_per_mtok": 1.0, "cached_input_per_mtok": 0.5, "output_per_mtok": 2.0,
         "windows": [{"name": "cheap-hours", "start_utc": boundary.strftime("%H:%M:%S"),
                      "end_utc": end.strftime("%H:%M:%S"), "input_per_mtok": 0.1, "output_per_mtok": 0.2}]}],
        model="fake-flash")
    with FaultServer(latency_s=0.6, prompt_tokens=100, completion_tokens=10) as server:
        result = run_harness(*run_args(server, gsm8k_docs, tmp_path / "results", "model.concurrency=1",
                                       "model.pricing.book=fake-flash", f"model.pricing.book_dir={book}"),
                             env={"DEEPSEEK_API_KEY": "sk-test"})
        answered = list(server.answered_at)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("runs/*/summary.json")]
    used = {u["price"]: u for u in summary["prices_used"]}
    before, after = used["flat"]["requests"], used["flat · cheap-hours"]["requests"]
    assert before + after == N_DOCS and before > 0 and after > 0, used
    # The server's own clock agrees on which side of the boundary each answer fell (one may straddle it).
    assert abs(sum(t >= boundary.timestamp() for t in answered) - after) <= 1
    assert summary["cost_usd"] == pytest.approx(before * (100 * 1.0 + 10 * 2.0) / 1e6 + after * (100 * 0.1 + 10 * 0.2) / 1e6)
    assert used["flat"]["cost_usd"] == pytest.approx(before * 120 / 1e6)


# ----------------------------------------------------------------------------------- price claims

@pytest.mark.parametrize("value, metric, date, status, words", [
    (3.48, "output", "2026-04-25", "consistent", "list price 2026-04-24..2026-05-05 (launch)"),
    (0.87, "output", "2026-06-10", "consistent", "(promo)"),
    # The launch price quoted after the promotion began: the book's price then was lower; it names the period it fits.
    (3.48, "output", "2026-06-10", "below claim", "matches m-1 list price 2026-04-24..2026-05-05"),
    # A month-precise date covers every period in force that month (May: launch and promotion).
    (0.87, "output", "2026-05", "consistent", "(promo)"),
    (0.4, "output", "2026-06-10", "consistent", "off-peak price"),
    # A figure no period ever had: the closest one is named.
    (0.27, "output", "2026-06-10", "above claim", "matches no m-1 period on or after its date; closest: $0.4"),
    (0.03625, "cached_input", "2026-05-20", "consistent", "(promo)"),
])
def test_a_price_claim_is_judged_against_the_book_on_its_date(tmp_path, value, metric, date, status, words):
    from harness.spend.price_claims import match_price_claim

    schedule = load_book(two_periods(tmp_path)).schedule("m-1")
    match = match_price_claim(schedule, metric, value, date)
    assert match.status == status, match.detail
    assert words in match.detail, match.detail


def test_every_price_claim_in_the_registry_gets_a_dated_verdict():
    shown = subprocess.run([sys.executable, "-m", "harness.prices", "--claims"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    from harness.claims.registry import CLAIMS_DIR, load_claims

    price_claims = [c for c in load_claims(CLAIMS_DIR) if c.kind == "price"]
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == len(price_claims) >= 8
    for claim, line in zip(price_claims, lines):
        assert line.startswith(claim.id)
        if claim.model is None and not claim.price_books:  # a model the book has no entry for (GPT-5): shown
            assert line.endswith("not judged"), line
            continue
        assert claim.source.date in line
        assert any(s in line for s in ("CONSISTENT", "ABOVE CLAIM", "BELOW CLAIM")), line
    assert sum(line.endswith("not judged") for line in lines) == 2  # DailyTechWire's Claude Opus 5 and GPT-5


# ----------------------------------------------------------------------------------- the cheapest way

def test_the_dry_run_prices_the_plan_now_through_batch_and_off_peak(tmp_path):
    from harness.common.exchange import ChatRequest
    from harness.spend.dry_run import History, estimate

    schedule = load_book(two_periods(tmp_path)).schedule("m-1")
    request = ChatRequest(messages=({"role": "user", "content": "x" * 400},), model_id="m", params={"max_tokens": 50})
    history = History(runs=1, input_tokens_per_prompt_byte=0.25, output_tokens_per_request=20,
                      slot_seconds_per_request=3.0)
    noon = dt.datetime(2026, 6, 2, 12, 0, tzinfo=UTC)
    plan = estimate([(request, False)] * 4 + [(request, True)], schedule, history, concurrency=2, now=noon)
    ways = {w.way: w for w in plan.ways}
    per_request_standard = (100 * 0.435 + 20 * 0.87) / 1e6
    assert plan.cost_usd == ways["standard"].cost_usd == pytest.approx(4 * per_request_standard)
    assert ways["batch"].cost_usd == pytest.approx(2 * per_request_standard)
    assert ways["off-peak"].cost_usd == pytest.approx(4 * (100 * 0.2 + 20 * 0.4) / 1e6)
    assert ways["off-peak"].starts_at.startswith("2026-06-02T16:30")
    # 4 requests at concurrency 2: two rounds of 3 s; off-peak adds the 4.5 h wait.
    assert ways["standard"].best_wall_s == pytest.approx(6.0)
    assert ways["off-peak"].best_wall_s == pytest.approx(4.5 * 3600 + 6.0)
    assert ways["batch"].longest_wall_s == 24 * 3600
    launch = estimate([(request, False)], schedule, history, now=dt.datetime(2026, 4, 30, tzinfo=UTC))
    assert {w.way: w.cost_usd for w in launch.ways}["batch"] is None  # no batch API in that period


def test_off_peak_waits_for_the_window_and_says_when_it_opens(tmp_path, capsys):
    from harness.spend.off_peak import wait_for_window

    schedule = load_book(two_periods(tmp_path)).schedule("m-1")
    slept: list[float] = []
    waited = wait_for_window(schedule, "off-peak", show=False, now=dt.datetime(2026, 6, 2, 16, 0, tzinfo=UTC),
                             sleep=slept.append)
    assert waited == pytest.approx(1800) and sum(slept) == pytest.approx(1800)
    assert "opens 2026-06-02 16:30 UTC and closes 00:30 UTC" in capsys.readouterr().out
    assert wait_for_window(schedule, "off-peak", show=False, now=dt.datetime(2026, 6, 2, 23, 0, tzinfo=UTC),
                           sleep=slept.append) == 0.0
    with pytest.raises(ConfigError, match="schedule.off_peak=false"):
        wait_for_window(schedule, "happy-hour", show=False, now=dt.datetime(2026, 6, 2, 23, 0, tzinfo=UTC))


def test_weekday_windows_make_a_weekend_off_peak_and_the_next_window_spans_it(tmp_path):
    """DeepSeek: weekends in Beijing time are off-peak all day (Fri 16:00 UTC to Sun 16:00 UTC)."""
    weekend = {"input_per_mtok": 0.5, "output_per_mtok": 1.0}
    schedule = load_book(write_book(tmp_path / "book", [
        {"id": "p", "effective_from": "2026-01-01T00:00:00Z", "effective_to": None, "input_per_mtok": 1.0,
         "output_per_mtok": 2.0,
         "windows": [{"name": "off-peak-weekend", "days": ["fri"], "start_utc": "16:00", "end_utc": "24:00", **weekend},
                     {"name": "off-peak-weekend", "days": ["sat"], "start_utc": "00:00", "end_utc": "24:00", **weekend},
                     {"name": "off-peak-weekend", "days": ["sun"], "start_utc": "00:00", "end_utc": "16:00", **weekend}]}],
    )).schedule("m-1")
    usage = Usage(input_tokens=1_000_000)
    at = lambda day, hour: dt.datetime(2026, 11, day, hour, tzinfo=UTC)  # 2026-11-27 is a Friday
    assert [schedule.quote(usage, at(d, h)).cost_usd for d, h in [(27, 15), (27, 16), (28, 12), (29, 15), (29, 16)]] \
        == [1.0, 0.5, 0.5, 0.5, 1.0]
    opens, closes, _ = schedule.next_window_start("off-peak", at(26, 9))
    assert (opens, closes) == (at(27, 16), at(29, 16))
    book = yaml.safe_load((tmp_path / "book" / "fake.yaml").read_text())
    book["models"]["m-1"]["periods"][0]["windows"][0]["days"] = ["friday", "caturday"]
    (tmp_path / "book" / "fake.yaml").write_text(yaml.safe_dump(book))
    with pytest.raises(ConfigError, match="window days are mon"):
        load_book(tmp_path / "book")


def test_a_dry_run_refuses_what_the_run_would_refuse_and_offers_only_what_can_run(tmp_path, gsm8k_docs):
    data = [f"task.dataset_path={gsm8k_docs}", "task=gsm8k", "task.dataset_sha256=null", "task.num_fewshot=0",
            f"results_dir={tmp_path / 'r'}", "tracking=none", "claims.enabled=false", "limit=2", "dry_run=true"]
    gemini = run_harness("model=gemini-3.1-pro", *data)
    assert gemini.returncode == 0, gemini.stderr[-2000:]
    (plan,) = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("runs/*gemini*/dry_run.json")]
    batch = {w["way"]: w for w in plan["estimate"]["ways"]}["batch"]
    assert batch["cost_usd"] is None and "provider 'google'" in batch["note"]  # the book has a discount; we cannot batch
    for wrong, says in [("model=v4-flash model.batch=true", "model.batch=true sends through"),
                        ("model=gpt-5.5 schedule.off_peak=true", "schedule.off_peak=false")]:
        refused = run_harness(*wrong.split(), *data)
        assert refused.returncode == 2 and says in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    free = run_harness("model=v4-flash", "model.pricing.book=null", *data)
    assert free.returncode == 0 and "has no prices" in free.stderr and "budget.max_usd" in free.stderr
