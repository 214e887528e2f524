"""Exact and bootstrap intervals, clustered standard errors, pass@k and power planning, checked
against closed forms and values worked out by hand (not by the scipy call the code makes)."""

import math
import random

import pytest

from harness.common.stats import (
    bootstrap_mean,
    clustered_mean_estimate,
    detectable_shortfall,
    exact_interval,
    items_needed,
    mean_estimate,
    pass_at_k,
    pass_at_k_estimate,
    power_of,
)

Z95_ONE_SIDED = 1.6448536  # Phi^-1(0.95)
Z80 = 0.8416212  # Phi^-1(0.80)
Z95_TWO_SIDED = 1.959964  # Phi^-1(0.975)
FAST = 2000  # resamples in tests


def _sd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _wilson(k, n, z=Z95_TWO_SIDED):
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))


def _width(e):
    return e.ci95[1] - e.ci95[0]


# --- Clopper-Pearson ---


def test_exact_interval_at_zero_and_all_successes_has_closed_form():
    low, high = exact_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert high == pytest.approx(0.3085, abs=1e-4)
    low, high = exact_interval(10, 10)
    assert low == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    assert high == 1.0


def test_exact_interval_textbook_value_and_wider_than_wilson():
    # 8/10: Clopper-Pearson 95% (0.4439, 0.9748) (Newcombe 1998, method 5); Wilson is (0.4902, 0.9433).
    low, high = exact_interval(8, 10)
    assert (low, high) == pytest.approx((0.4439, 0.9748), abs=1e-4)
    w_low, w_high = _wilson(8, 10)
    assert low < w_low and high > w_high
    low99, high99 = exact_interval(8, 10, confidence=0.99)
    assert low99 < low and high99 > high


def test_exact_interval_rejects_impossible_counts():
    with pytest.raises(ValueError):
        exact_interval(11, 10)
    assert all(math.isnan(b) for b in exact_interval(0, 0))


# --- bootstrap ---


def test_bootstrap_of_binary_vector_is_close_to_wilson():
    values = [1] * 280 + [0] * 120  # p = 0.7, n = 400
    e = bootstrap_mean(values, n_resamples=FAST, seed=1)
    assert e.value == pytest.approx(0.7)
    assert e.n == 400
    for got, want in zip(e.ci95, _wilson(280, 400)):
        assert got == pytest.approx(want, abs=0.01)
    assert e.stderr == pytest.approx(math.sqrt(0.7 * 0.3 / 400), rel=0.1)


def test_bootstrap_is_deterministic_for_a_seed_and_varies_with_it():
    rng = random.Random(3)
    values = [rng.random() for _ in range(50)]
    clusters = [i // 5 for i in range(50)]
    a = bootstrap_mean(values, n_resamples=FAST, seed=7, clusters=clusters)
    b = bootstrap_mean(values, n_resamples=FAST, seed=7, clusters=clusters)
    c = bootstrap_mean(values, n_resamples=FAST, seed=8, clusters=clusters)
    assert a == b
    assert a.ci95 != c.ci95
    unclustered = bootstrap_mean(values, n_resamples=FAST, seed=7)
    assert unclustered == bootstrap_mean(values, n_resamples=FAST, seed=7)


def test_cluster_bootstrap_on_triplicated_items_is_sqrt3_wider_than_naive():
    rng = random.Random(0)
    items = [1 if rng.random() < 0.6 else 0 for _ in range(200)]
    values = [v for v in items for _ in range(3)]
    clusters = [i for i in range(200) for _ in range(3)]
    clustered = bootstrap_mean(values, n_resamples=FAST, seed=0, clusters=clusters)
    naive = bootstrap_mean(values, n_resamples=FAST, seed=0)
    assert clustered.value == naive.value == pytest.approx(sum(items) / 200)
    ratio = _width(clustered) / _width(naive)
    assert 1.5 <= ratio <= 2.0  # sqrt(3) = 1.73
    # resampling the triplicated items is the same as resampling the items themselves
    once = bootstrap_mean(items, n_resamples=FAST, seed=0)
    assert _width(clustered) == pytest.approx(_width(once), rel=0.1)


def test_cluster_bootstrap_accepts_unsorted_string_ids_and_unequal_sizes():
    values = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    clusters = ["b", "a", "b", "c", "a", "d", "c", "e", "e", "d"]
    e = bootstrap_mean(values, n_resamples=FAST, clusters=clusters)
    assert e.value == pytest.approx(0.6)
    assert e.ci95[0] <= 0.6 <= e.ci95[1]
    with pytest.raises(ValueError):
        bootstrap_mean(values, clusters=clusters[:-1])


@pytest.mark.parametrize(
    "values, clusters",
    [([0.3], None), ([1, 1, 1, 1], None), ([0.25] * 6, [1, 1, 2, 2, 3, 3]), ([0, 1, 1], ["x", "x", "x"])],
)
def test_bootstrap_degenerate_inputs_collapse_to_the_value(values, clusters):
    e = bootstrap_mean(values, n_resamples=FAST, clusters=clusters)
    mean = sum(values) / len(values)
    assert e.value == pytest.approx(mean)
    assert e.ci95 == (e.value, e.value)


def test_bootstrap_of_nothing_is_nan():
    e = bootstrap_mean([])
    assert math.isnan(e.value) and e.n == 0


# --- cluster-robust standard error ---


def test_clustered_se_with_one_sample_per_item_is_the_ordinary_stderr():
    values = [0.2, 0.9, 0.4, 0.4, 1.0, 0.0, 0.7]
    e = clustered_mean_estimate(values, clusters=list(range(len(values))))
    assert e.stderr == pytest.approx(_sd(values) / math.sqrt(len(values)))
    assert e.stderr == pytest.approx(mean_estimate(values).stderr)
    # t interval with G - 1 = 6 degrees of freedom: t_{0.975, 6} = 2.446912
    assert e.ci95 == pytest.approx((e.value - 2.446912 * e.stderr, e.value + 2.446912 * e.stderr), abs=1e-6)


def test_clustered_se_ignores_duplication_where_naive_se_shrinks_by_sqrt3():
    items = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1]
    tripled = [v for v in items for _ in range(3)]
    clusters = [i for i in range(len(items)) for _ in range(3)]
    e = clustered_mean_estimate(tripled, clusters)
    plain = _sd(items) / math.sqrt(len(items))
    naive = _sd(tripled) / math.sqrt(len(tripled))
    assert e.stderr == pytest.approx(plain)
    assert e.stderr / naive == pytest.approx(math.sqrt(3), rel=0.05)
    assert e.n == len(tripled)


def test_clustered_se_with_unequal_sizes_matches_ratio_formula_by_hand():
    groups = {"q1": [1, 1, 0], "q2": [0], "q3": [1, 0], "q4": [1, 1, 1, 1], "q5": [0, 0]}
    values = [v for g in groups.values() for v in g]
    clusters = [name for name, g in groups.items() for _ in g]
    n_total, g_count = len(values), len(groups)
    m = sum(values) / n_total  # 7 / 12
    nbar = n_total / g_count
    ss = sum((sum(g) - m * len(g)) ** 2 for g in groups.values())
    want = math.sqrt(ss / (g_count * (g_count - 1))) / nbar
    e = clustered_mean_estimate(values, clusters)
    assert e.value == pytest.approx(7 / 12)
    assert e.stderr == pytest.approx(want)


def test_clustered_se_agrees_with_the_cluster_bootstrap():
    rng = random.Random(5)
    values, clusters = [], []
    for item in range(150):
        p = rng.random()
        for _ in range(rng.randint(1, 6)):
            values.append(1 if rng.random() < p else 0)
            clusters.append(item)
    analytic = clustered_mean_estimate(values, clusters)
    boot = bootstrap_mean(values, n_resamples=FAST, clusters=clusters)
    assert boot.stderr == pytest.approx(analytic.stderr, rel=0.15)


def test_clustered_se_degenerate_inputs():
    e = clustered_mean_estimate([1, 0, 1], ["only"] * 3)
    assert e.stderr is None and e.ci95 == (e.value, e.value)
    e = clustered_mean_estimate([0.5] * 4, [1, 1, 2, 2])
    assert e.stderr == 0 and e.ci95 == (0.5, 0.5)


# --- pass@k ---


def test_pass_at_k_hand_values():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3, abs=1e-12)
    assert pass_at_k(10, 0, 5) == 0
    assert pass_at_k(10, 10, 1) == 1
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2), abs=1e-12)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-12)
    assert pass_at_k(5, 2, 4) == 1.0  # only 3 wrong samples, any 4 include a right one


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    # C(2000, 1000) ~ 1e600 does not fit a float; the exact integer ratio does.
    want = 1 - math.comb(1500, 100) / math.comb(2000, 100)
    assert pass_at_k(2000, 500, 100) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 6)


def test_pass_at_k_estimate_is_the_item_mean_with_a_bootstrap_over_items():
    per_item = [(10, 3), (10, 0), (10, 10), (5, 2)] * 10
    e = pass_at_k_estimate(per_item, k=1, n_resamples=FAST)
    assert e.value == pytest.approx((0.3 + 0 + 1 + 0.4) / 4)
    assert e.n == 40
    assert e.ci95[0] < e.value < e.ci95[1]
    assert pass_at_k_estimate(per_item, k=1, n_resamples=FAST) == e


# --- power planning ---


def _n_by_hand(p0, d, z_a=Z95_ONE_SIDED, z_b=Z80):
    p1 = p0 - d
    return math.ceil(((z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))) / d) ** 2)


def test_items_needed_matches_the_formula_by_hand():
    n = items_needed(0.943, 0.05)
    assert n == _n_by_hand(0.943, 0.05)
    # p1 = 0.893: ((1.6448536 * 0.231843 + 0.8416212 * 0.309113) / 0.05)^2 = 12.8301^2 = 164.61 -> 165
    assert n == 165


def test_items_needed_two_sided_uses_z_of_alpha_over_two():
    assert items_needed(0.8, 0.05, one_sided=False) == _n_by_hand(0.8, 0.05, z_a=Z95_TWO_SIDED)


def test_items_needed_grows_about_fourfold_when_shortfall_halves():
    for claimed in (0.5, 0.75, 0.943):
        ratio = items_needed(claimed, 0.02) / items_needed(claimed, 0.04)
        assert 3.0 <= ratio <= 5.0


def test_power_reaches_target_at_items_needed_and_not_at_half():
    for claimed, shortfall in [(0.943, 0.05), (0.6, 0.05), (0.8, 0.1), (0.5, 0.02)]:
        n = items_needed(claimed, shortfall)
        assert power_of(claimed, claimed - shortfall, n) >= 0.8
        assert power_of(claimed, claimed - shortfall, n // 2) < 0.8
        assert power_of(claimed, claimed - shortfall, n - 1) < 0.8  # n is the smallest such count


def test_power_of_at_no_shortfall_is_alpha_and_above_claim_is_less():
    assert power_of(0.7, 0.7, 100) == pytest.approx(0.05, abs=1e-6)
    assert power_of(0.7, 0.75, 100) < 0.05
    assert power_of(0.7, 0.7, 100, one_sided=False) == pytest.approx(0.05, abs=1e-6)


def test_detectable_shortfall_inverts_items_needed():
    for claimed, shortfall in [(0.943, 0.05), (0.6, 0.05), (0.8, 0.1)]:
        n = items_needed(claimed, shortfall)
        d = detectable_shortfall(claimed, n)
        assert d == pytest.approx(shortfall, abs=2e-3)
        assert d <= shortfall  # n was rounded up, so slightly smaller shortfalls are detectable
        assert power_of(claimed, claimed - d, n) == pytest.approx(0.8, abs=1e-6)


def test_detectable_shortfall_is_nan_when_nothing_is_detectable():
    assert math.isnan(detectable_shortfall(0.01, 1))
