"""The plots read at a glance: on claims.png (1 to 35 claims) and compare.png no label box touches
the legend or another label; claims.html carries its plot inside; compare.png names the models and
tasks, shows delta, p and verdict per task, and draws a cost panel only when money was spent."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from harness.claims.report import claims_figure, render_html, write_report
from harness.records.compare import RunRecords, compare_figure, compare_runs, plot_panels, render_plot

NAMES = ["DeepSeek V4 (671B)", "DeepSeek V4-Pro-Max", "GPT-5.5 (xHigh)", "Claude Opus 4.7 (adaptive thinking)",
         "V4-Flash", "Qwen3.5-397B-A17B (thinking, as the vendor's table names it)"]


def _status(claimed: float, lo: float = 68.2, hi: float = 74.3) -> str:
    return "below claim" if claimed > hi else "above claim" if claimed < lo else "consistent"


def claims_summary(n_claims: int, with_price: bool = True) -> dict[str, Any]:
    """One run's summary with `n_claims` score claims (same measurement, claims spread over 35-99%)
    and, optionally, a price claim that must stay off the percent plot."""
    claimed = [round(35 + 64 * i / max(1, n_claims - 1), 1) for i in range(n_claims)]
    claims = [{"claim_id": f"claim-{i}", "kind": "score", "model_as_named": NAMES[i % len(NAMES)],
               "benchmark": "MMLU-Pro", "source": "somewhere, 2026-05-25", "status": _status(value),
               "claimed": value, "measured": 71.3, "ci95": [68.2, 74.3], "n": 800, "task": "mmlu_pro_official",
               "mismatches": ["reasoning: the claim is at 'max', the run at 'high'"] * (i % 3),
               "unknowns": [], "cost_usd": 0.4213 if i % 5 else None, "detail": "synthetic"}
              for i, value in enumerate(claimed)]
    if with_price:
        claims.append({"claim_id": "price", "kind": "price", "model_as_named": "V4-Flash", "benchmark": "price",
                       "source": "somewhere, 2026-04", "status": "consistent", "claimed": 0.14, "measured": 0.14,
                       "ci95": None, "n": None, "task": None, "mismatches": [], "unknowns": [], "cost_usd": None,
                       "detail": "synthetic"})
    return {"run_id": "20261130T140843Z-v4-flash-mmlu_pro_official-6b2a9e", "model": "v4-flash",
            "task": "mmlu_pro_official", "endpoint": {"model_id": "deepseek-v4-flash"}, "cost_usd": 0.42,
            "claims": claims}


def _drawn_texts(fig):
    """Every text the figure draws outside its legend: titles, axis labels, tick labels in view, texts."""
    texts = list(fig.texts)  # the suptitle among them
    for ax in fig.axes:
        texts += [*ax.texts, ax.title]
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_visible():
                lo, hi = sorted(axis.get_view_interval())
                locs = axis.get_majorticklocs()
                texts += [axis.label] + [label for loc, tick in zip(locs, axis.get_major_ticks(len(locs)))
                                         if lo <= loc <= hi for label in (tick.label1, tick.label2)]
    return [t for t in texts if t.get_visible() and t.get_text()]


def _label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    [legend] = fig.legends
    return legend.get_window_extent(renderer), [t.get_window_extent(renderer) for t in _drawn_texts(fig)]


def assert_no_label_collides(fig) -> None:
    legend, labels = _label_boxes(fig)
    for box in labels:
        assert not box.overlaps(legend), "a label under the legend"
    for a, b in itertools.combinations(labels, 2):
        assert not a.overlaps(b), "two labels on top of each other"


@pytest.mark.parametrize("n_claims", [1, 5, 35])
def test_claims_plot_labels_never_collide(n_claims):
    import matplotlib.pyplot as plt

    fig = claims_figure(claims_summary(n_claims))
    try:
        assert_no_label_collides(fig)
        [ax] = fig.axes
        data_area = ax.get_window_extent()
        assert len(ax.texts) == n_claims + 1  # one verdict per score claim (the price claim is not here) + header
        for verdict in ax.texts:  # the verdict column is right of the data, not over a marker
            assert verdict.get_window_extent().x0 >= data_area.x1
        assert not fig.legends[0].get_window_extent().overlaps(data_area)
        assert fig.get_suptitle().startswith("v4-flash on mmlu_pro_official")
        lo, hi = ax.get_xlim()  # fitted to intervals and claims, within 0-100 plus room for a marker
        claimed = [v["claimed"] for v in claims_summary(n_claims)["claims"] if v["kind"] == "score"]
        assert -3 <= lo < min(claimed + [68.2]) - 1 and max(claimed + [74.3]) + 1 < hi <= 103
    finally:
        plt.close(fig)


def test_no_score_claim_no_plot_and_no_image(tmp_path):
    summary = claims_summary(0)
    (tmp_path / "claims.png").write_bytes(b"stale")
    written = write_report(summary, tmp_path)
    assert [p.name for p in written] == ["claims.md", "claims.html"]
    assert not (tmp_path / "claims.png").exists()
    assert "<img" not in (tmp_path / "claims.html").read_text()


def test_claims_html_embeds_its_plot(tmp_path):
    written = write_report(claims_summary(3), tmp_path)
    assert {p.name for p in written} == {"claims.md", "claims.html", "claims.png"}
    page = (tmp_path / "claims.html").read_text()
    assert "data:image/png;base64,iVBORw0KGgo" in page  # the PNG signature, base64-encoded
    assert "src='claims.png'" not in page and 'src="claims.png"' not in page
    assert "<link" not in page and "<script" not in page  # nothing fetched from elsewhere
    assert "<img" not in render_html(claims_summary(3))  # no image given, none referenced



def _write_run(results: Path, run_id: str, scores: dict[str, list[float]], usd_per_item: float) -> Path:
    from harness.common.stats import mean_estimate

    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    rows = [{"task": task, "doc_id": i, "score": s} for task, values in scores.items() for i, s in enumerate(values)]
    tasks = {}
    for task, values in scores.items():
        estimate, cost = mean_estimate(values), usd_per_item * len(values)
        tasks[task] = {"value": estimate.value, "ci95": list(estimate.ci95), "n": len(values), "cost_usd": cost,
                       "cost_per_correct_usd": cost / sum(values)}
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({
        "run_id": run_id, "model": "v4-flash", "task": "nightly-mix", "endpoint": {"served_model": ["v4-flash"]},
        "tasks": tasks, "cost_usd": sum(t["cost_usd"] for t in tasks.values())}))
    return folder


def two_task_runs(results: Path, usd_per_item: float) -> tuple[RunRecords, RunRecords]:
    """(current, baseline): GSM8K drops 9 points (4 items gained, 22 lost of 200); MMLU-Pro holds
    (12 gained, 9 lost of 300)."""
    baseline, current = {}, {}
    for task, n, right, up, down in (("gsm8k", 200, 150, 4, 22), ("mmlu_pro_official", 300, 210, 12, 9)):
        baseline[task] = [1.0] * right + [0.0] * (n - right)
        current[task] = [0.0] * down + [1.0] * (right - down) + [1.0] * up + [0.0] * (n - right - up)
    runs = (("20261130T020000Z-v4-flash-nightly-mix-4d5e6f", current),
            ("20261129T020000Z-v4-flash-nightly-mix-1a2b3c", baseline))
    return tuple(RunRecords.load(_write_run(results, run_id, scores, usd_per_item)) for run_id, scores in runs)


@pytest.mark.parametrize("usd_per_item, panels", [(0.0, ("scores", "delta")), (0.0004, ("scores", "delta", "cost"))])
def test_compare_plot_shows_delta_p_and_verdict_and_cost_only_when_spent(tmp_path, usd_per_item, panels):
    import matplotlib.pyplot as plt

    current, baseline = two_task_runs(tmp_path, usd_per_item)
    assert plot_panels(current, baseline) == panels
    comparison = compare_runs(current, baseline)
    fig = compare_figure(comparison, current, baseline)
    try:
        assert len(fig.axes) == len(panels) + 1  # + the p / verdict labels right of the deltas
        assert any("USD" in ax.get_xlabel() for ax in fig.axes) == ("cost" in panels)
        title = fig.get_suptitle()
        assert title.startswith("v4-flash on nightly-mix") and current.summary["run_id"] in title
        verdict_labels = [t.get_text() for t in fig.axes[-1].get_yticklabels()]
        assert verdict_labels[0].endswith("p = 0.00053\nregressed") and verdict_labels[0].startswith("-9.0 [")
        assert verdict_labels[1].endswith("no significant change")
        assert_no_label_collides(fig)
    finally:
        plt.close(fig)
    render_plot(comparison, current, baseline, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claims_html_of_a_run_without_claims_says_so():
    from harness.claims.report import render_html

    page = render_html({"run_id": "r", "model": "m", "task": "t", "claims": []})
    assert "No claim in the registry is about this model and benchmark" in page and "<table" not in page
