"""Confidence intervals for a score that is a mean over samples.

Binary scores (accuracy, exact match) get the Wilson interval, which stays inside [0, 1] and keeps
its coverage at the small n and extreme rates that spot checks of claims produce; other scores get
the normal interval on the standard error.

Also here: the exact (Clopper-Pearson) interval; a percentile bootstrap and a cluster-robust
standard error for means whose items were sampled several times; the unbiased pass@k; and the
sample-size / power arithmetic for checking a claimed accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from statistics import NormalDist

import numpy as np


class _LazyScipyStats:
    """scipy.stats, imported at first use: importing it costs ~0.7 s (1.1 s under load), paid after the
    last response of every run, while a plain run's interval (Wilson, normal) needs only closed forms."""

    def __getattr__(self, name: str):
        from scipy import stats

        return getattr(stats, name)


scipy_stats = _LazyScipyStats()


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float | None  # sample standard deviation / sqrt(n); None when n < 2
    ci95: tuple[float, float]
    n: int


def mean_estimate(scores: Sequence[float], confidence: float = 0.95) -> Estimate:
    n = len(scores)
    if n == 0:
        return Estimate(math.nan, None, (math.nan, math.nan), 0)
    mean = sum(scores) / n
    stderr = None
    if n > 1:
        variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
        stderr = math.sqrt(variance / n)
    if all(s in (0, 1) for s in scores):
        ci = _wilson(mean, n, confidence)
    else:
        half = NormalDist().inv_cdf(0.5 + confidence / 2) * (stderr or 0.0)
        ci = (mean - half, mean + half)
    return Estimate(mean, stderr, ci, n)


# --- Exact binomial interval -------------------------------------------------------------------


def exact_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval for k successes in n trials.

    Why: it inverts two one-sided binomial tests, so its coverage is never below the nominal level
    (conservative), which is what you want when a verdict such as "the model falls short of the
    claimed accuracy" must not be an artefact of an approximate interval at small n or at 0/n, n/n.
    Wilson (mean_estimate) is shorter on average; this is the guaranteed-coverage alternative.
    Clopper & Pearson (1934), Biometrika 26(4):404-413. Closed forms at the edges:
    0/n -> (0, 1 - (alpha/2)**(1/n)), n/n -> ((alpha/2)**(1/n), 1). n = 0 gives (nan, nan).
    """
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    interval = scipy_stats.binomtest(int(k), int(n)).proportion_ci(confidence, method="exact")
    return (float(interval.low), float(interval.high))


# --- Means over items that were sampled several times --------------------------------------------


def _cluster_totals(
    values: Sequence[float], clusters: Sequence[object] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums s_i and sizes n_i, clusters in order of first appearance.

    Without clusters every value is its own cluster (s_i = x_i, n_i = 1). Cluster ids may be any
    hashable (problem ids, ints, tuples); they need not be sorted or contiguous.
    """
    x = np.asarray(values, dtype=float)
    if clusters is None:
        return x, np.ones(len(x))
    if len(clusters) != len(x):
        raise ValueError(f"clusters has {len(clusters)} ids for {len(x)} values")
    inverse = _cluster_ids(clusters)
    return np.bincount(inverse, weights=x), np.bincount(inverse).astype(float)


def _cluster_ids(clusters: Sequence[object]) -> np.ndarray:
    """Each value's cluster as 0..G-1, numbered in order of first appearance."""
    index: dict[object, int] = {}
    return np.fromiter((index.setdefault(c, len(index)) for c in clusters), dtype=np.intp, count=len(clusters))


def _items(values: Sequence[float], clusters: Sequence[object] | None):
    """(values, per-item sums, per-item counts, None), or an Estimate already decided when there are
    fewer than two items (empty: nan; one item: the mean with no stderr)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return x, None, None, Estimate(math.nan, None, (math.nan, math.nan), 0)
    sums, counts = _cluster_totals(x, clusters)
    if len(sums) < 2:
        mean = float(x.mean())
        return x, sums, counts, Estimate(mean, None, (mean, mean), len(x))
    return x, sums, counts, None


def bootstrap_mean(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    clusters: Sequence[object] | None = None,
) -> Estimate:
    """Percentile-bootstrap interval for the mean of `values`.

    Why: it needs no distributional assumption, so it serves scores that are neither 0/1 nor
    roughly normal (pass@k averages, partial credit), and with `clusters` it honours the design of
    the eval: when an item was sampled several times (n samples per problem, pass@k), whole items
    are resampled with replacement (cluster / "block" bootstrap, Davison & Hinkley 1997, Bootstrap
    Methods and their Application, sec. 3.8, hierarchical data), so repeated samples of one item
    are not counted as independent evidence. Resampling single values instead would shrink the
    interval by about sqrt(samples per item) whenever samples of an item agree with each other.

    Statistic: the pooled mean sum(values) / len(values); over a resample of items it is
    sum_i s_i / sum_i n_i (s_i = total, n_i = number of samples of item i), which equals the mean of
    per-item means when every item has the same number of samples. Interval: the alpha/2 and
    1 - alpha/2 quantiles of the resampled statistic (Efron & Tibshirani 1993, An Introduction to
    the Bootstrap, ch. 13). stderr: the standard deviation of the resampled statistic. n: the number
    of values (samples), as in mean_estimate.

    Deterministic: a numpy Generator seeded with `seed`, resamples drawn in a fixed order.
    Degenerate inputs (one value, one item, all values equal) give stderr None (fewer than two
    items) or 0.0 and an interval collapsed to the mean. Empty input gives nan, like mean_estimate.
    """
    x, sums, counts, early = _items(values, clusters)
    if early is not None:
        return early
    n, mean, n_items = len(x), float(x.mean()), len(sums)
    if np.ptp(x) == 0:
        return Estimate(mean, 0.0, (mean, mean), n)

    rng = np.random.default_rng(seed)
    stats_ = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n_items)  # bound memory at ~16 MB of indices; depends only on n_items
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        picks = rng.integers(0, n_items, size=(stop - start, n_items))
        stats_[start:stop] = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(stats_, [alpha / 2, 1 - alpha / 2])
    stderr = float(np.std(stats_, ddof=1)) if n_resamples > 1 else None
    return Estimate(mean, stderr, (float(low), float(high)), n)


def clustered_mean_estimate(
    values: Sequence[float], clusters: Sequence[object], confidence: float = 0.95
) -> Estimate:
    """Mean with a cluster-robust standard error, for items that carry several samples each.

    Why: samples of one item are correlated (the same question is easy or hard for every sample),
    so the naive stderr sd/sqrt(N) over all N samples overstates the evidence; with every sample
    of an item identical it is sqrt(samples per item) too small. The item, not the sample, is the
    independent unit (Miller 2024, "Adding Error Bars to Evals", arXiv:2411.00640: clustered standard errors).

    Estimator: the ratio (pooled) mean m = sum_i s_i / sum_i n_i over G items, s_i = sum of the
    values of item i, n_i = its number of samples, nbar = N / G. Its linearised standard error
    (Cochran 1977, Sampling Techniques, 3rd ed., ch. 6, the ratio estimator, applied to clusters
    of unequal size with y = s_i and x = n_i):

        SE = sqrt( sum_i (s_i - m * n_i)**2 / (G * (G - 1)) ) / nbar

    This is the Liang-Zeger cluster-robust ("sandwich") SE of an intercept-only regression with the
    G/(G-1) small-sample factor, i.e. Stata's `regress y, vce(cluster id)` (Cameron & Miller 2015,
    J. Human Resources 50(2):317-372). Special cases: one sample per item gives the
    ordinary sd(ddof=1)/sqrt(N); equal n_i gives the ordinary stderr of the per-item means.
    Interval: m -/+ t_{G-1} * SE, Student t with G - 1 degrees of freedom, as Cameron & Miller
    recommend for few clusters; it is not clipped to [0, 1].
    n: the number of values. One item gives stderr None and the interval (m, m), like mean_estimate
    at n = 1; empty input gives nan.
    """
    x, sums, counts, early = _items(values, clusters)
    if early is not None:
        return early
    n, mean, g = len(x), float(x.mean()), len(sums)
    nbar = n / g
    residual = sums - mean * counts
    stderr = math.sqrt(float(np.sum(residual**2)) / (g * (g - 1))) / nbar
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=g - 1)) * stderr
    return Estimate(mean, stderr, (mean - half, mean + half), n)


# --- pass@k --------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one item from n samples of which c are correct.

    Why: estimating pass@k as "any of the first k samples passed" wastes samples and is noisy;
    drawing n >= k samples and computing the probability that a random k-subset contains a correct
    one, 1 - C(n-c, k) / C(n, k), is unbiased (Chen et al. 2021, "Evaluating Large Language Models
    Trained on Code", arXiv:2107.03374, eq. 1 and fig. 3). The binomials overflow floats for large n,
    so it is computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k / i) (their fig. 3).
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=float)))


def pass_at_k_estimate(
    per_item: Sequence[tuple[int, int]],
    k: int,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> Estimate:
    """pass@k over a benchmark: the mean of per-item pass@k, per_item = [(n samples, c correct), ...].

    Why: the per-item estimates are not 0/1 and the items are the independent units, so the
    interval is a percentile bootstrap over items (bootstrap_mean), each item weighted equally as in
    Chen et al. 2021. n in the result is the number of items.
    """
    scores = [pass_at_k(n_i, c_i, k) for n_i, c_i in per_item]
    return bootstrap_mean(scores, confidence=confidence, n_resamples=n_resamples, seed=seed)


# --- Power planning for checking a claimed accuracy ----------------------------------------------
#
# Test: H0: p = p0 (the claimed accuracy) against p < p0 (one-sided) or p != p0, one-sample z test on
# a proportion with the null variance p0(1-p0)/n; the alternative is a true accuracy p1 = p0 - d.
# Sample size (normal approximation; Chow, Shao & Wang 2008, Sample Size Calculations in Clinical
# Research, 2nd ed., ch. 4, one-sample test for a proportion; Fleiss, Levin & Paik 2003, Statistical
# Methods for Rates and Proportions, 3rd ed., ch. 2):
#     n = ((z_a * sqrt(p0 (1-p0)) + z_b * sqrt(p1 (1-p1))) / (p0 - p1))**2,  rounded up,
# z_a = Phi^-1(1 - alpha) (one-sided) or Phi^-1(1 - alpha/2) (two-sided), z_b = Phi^-1(power).
# Power at n, same approximation:  Phi( (d sqrt(n) - z_a sqrt(p0 (1-p0))) / sqrt(p1 (1-p1)) ),
# plus the opposite tail when two-sided. Exact binomial power is a saw-tooth in n around this curve.


def _z_alpha(alpha: float, one_sided: bool) -> float:
    return float(scipy_stats.norm.ppf(1 - alpha if one_sided else 1 - alpha / 2))


def _check_accuracy(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {p}")


def items_needed(
    claimed: float, shortfall: float, alpha: float = 0.05, power: float = 0.8, one_sided: bool = True
) -> int:
    """Items needed to detect a true accuracy of claimed - shortfall against H0: p = claimed.

    Why: before spending money on a spot check of a published number, know whether the planned
    number of items can tell a real shortfall from sampling noise; a run with fewer items can only
    return "underpowered". Accuracies are fractions (0.943, not 94.3). Formula in the block above.
    """
    _check_accuracy("claimed", claimed)
    true_value = claimed - shortfall
    if not shortfall > 0 or true_value < 0:
        raise ValueError(f"need 0 < shortfall <= claimed, got claimed={claimed}, shortfall={shortfall}")
    z_a = _z_alpha(alpha, one_sided)
    z_b = float(scipy_stats.norm.ppf(power))
    root = z_a * math.sqrt(claimed * (1 - claimed)) + z_b * math.sqrt(true_value * (1 - true_value))
    return max(1, math.ceil((root / shortfall) ** 2))


def power_of(claimed: float, true_value: float, n: int, alpha: float = 0.05, one_sided: bool = True) -> float:
    """Probability that n items reject H0: p = claimed when the true accuracy is true_value.

    Why: tells how much a verdict of "consistent with the claim" is worth at the n actually run.
    One-sided looks for a shortfall only (true_value above the claim gives power below alpha).
    Normal approximation matching items_needed, so power_of(p0, p1, items_needed(p0, p0 - p1)) >= power.
    """
    _check_accuracy("claimed", claimed)
    _check_accuracy("true_value", true_value)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z_a = _z_alpha(alpha, one_sided)
    sd0 = math.sqrt(claimed * (1 - claimed))
    sd1 = math.sqrt(true_value * (1 - true_value))
    root_n = math.sqrt(n)

    def tail(gap: float) -> float:  # P(reject on the side where true_value - claimed = -gap)
        margin = gap * root_n - z_a * sd0
        if sd1 == 0:  # the observed rate equals true_value with certainty
            return 1.0 if margin > 0 else 0.0
        return float(scipy_stats.norm.cdf(margin / sd1))

    d = claimed - true_value
    return tail(d) if one_sided else min(1.0, tail(d) + tail(-d))


def detectable_shortfall(
    claimed: float, n: int, alpha: float = 0.05, power: float = 0.8, one_sided: bool = True
) -> float:
    """Smallest shortfall d such that n items detect a true accuracy of claimed - d with `power`.

    Why: the honest summary of a spot check that found nothing: "with n items we could only have
    seen shortfalls of d or more". Solves power_of(claimed, claimed - d, n) = power for d with
    Brent's method on (0, claimed]; nan if even a true accuracy of 0 would not reach `power`.
    """
    _check_accuracy("claimed", claimed)
    if claimed == 0:
        return math.nan

    def gap(d: float) -> float:
        return power_of(claimed, claimed - d, n, alpha, one_sided) - power

    low = min(1e-12, claimed / 2)
    if gap(claimed) < 0:
        return math.nan
    if gap(low) >= 0:
        return low
    from scipy.optimize import brentq

    return float(brentq(gap, low, claimed, xtol=1e-12))


def paired_bootstrap_p(differences: Sequence[float], n_resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value for "the mean paired difference is 0" (per-item differences of two runs on
    the same items, e.g. pass@k): twice the smaller share of bootstrap means on either side of 0,
    after centring the differences on 0 (the null). Seeded: the same inputs give the same p."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return 1.0
    if np.ptp(d) == 0:  # every item moved by the same amount: no sampling noise to weigh it against
        return 1.0 if d[0] == 0 else 0.0
    rng = np.random.default_rng(seed)
    observed = d.mean()
    centred = d - observed
    means = centred[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    # (extreme resamples + 1) / (resamples + 1): never exactly 0 from a finite bootstrap.
    return float(min(1.0, (np.sum(np.abs(means) >= abs(observed)) + 1) / (n_resamples + 1)))


# --- Items x repeats -----------------------------------------------------------------------------
#
# An item's score over k repeats has variance sb2 + sw2 / k: sb2 between items (some are hard for
# every draw), sw2 within an item (draws disagreeing). With s = sw2 / (sb2 + sw2), m items x k
# repeats carry as much evidence as m / (1 - s + s / k) single answers (the design effect of a
# two-stage sample; Kish 1965, Survey Sampling, sec. 5.4; Miller 2024, arXiv:2411.00640, sec. 2.3).
# Repeats can only remove the within-item part: with s = 0.3 no number of repeats makes one item
# worth more than 1 / 0.7 = 1.43 items.


def within_item_share(values: Sequence[float], clusters: Sequence[object]) -> float | None:
    """s = sw2 / (sb2 + sw2) from one-way ANOVA variance components (Searle, Casella & McCulloch
    1992, Variance Components, sec. 3.5, unbalanced: n0 = (N - sum n_i^2 / N) / (G - 1); a negative
    sb2 is set to 0). None when no item has two answers or there are fewer than two items; 0.0
    when every answer is the same."""
    x = np.asarray(values, dtype=float)
    sums, counts = _cluster_totals(x, clusters)
    g, n = len(sums), len(x)
    if g < 2 or n <= g:
        return None
    means = sums / counts
    msw = float(np.sum((x - means[_cluster_ids(clusters)]) ** 2)) / (n - g)
    msb = float(np.sum(counts * (means - x.mean()) ** 2)) / (g - 1)
    n0 = (n - float(np.sum(counts**2)) / n) / (g - 1)
    sb2 = max(0.0, (msb - msw) / n0)
    total = sb2 + msw
    return 0.0 if total == 0 else msw / total


def repeats_design_effect(within_share: float | None, repeats: int) -> float:
    """How many single answers' worth of variance one item with `repeats` answers carries (<= 1)."""
    s = within_share or 0.0
    return 1.0 - s + s / max(1, repeats)


def items_needed_with_repeats(claimed: float, shortfall: float, repeats: float, within_share: float | None,
                              alpha: float = 0.05, power: float = 0.8) -> int:
    """Items needed at `repeats` answers each to detect `shortfall` below `claimed` (see above);
    repeats=math.inf gives the floor no number of repeats goes below."""
    return max(1, math.ceil(items_needed(claimed, shortfall, alpha, power) * repeats_design_effect(within_share, repeats)))


def clustered_proportion_estimate(values: Sequence[float], clusters: Sequence[object],
                                  confidence: float = 0.95) -> Estimate:
    """A 0/1 score over items answered several times: the Wilson interval at the effective number of
    answers n_eff = p(1 - p) / SE^2 (SE: clustered_mean_estimate's cluster-robust standard error),
    kept between the number of items and the number of answers.

    Why: the clustered t interval collapses to a point when every item's answers agree (SE = 0: all
    wrong, all right) and undercovers near 0 and 1; Wilson does neither. Repeats that add nothing
    (temperature 0, answers that agree) give n_eff = items, the interval of one answer per item;
    repeats that disagree can narrow it as far as independent answers would, never further. When
    SE = 0 and p is 0 or 1 the data cannot say how much the repeats are worth: n_eff = items.
    n: the number of items.
    """
    e = clustered_mean_estimate(values, clusters)
    n_items, n_answers = len(set(clusters)), len(values)
    if n_answers == 0:
        return e
    p = e.value
    if e.stderr:
        n_eff = min(float(n_answers), max(float(n_items), p * (1 - p) / e.stderr**2))
    else:
        n_eff = float(n_answers) if 0 < p < 1 else float(n_items)
    low, high = _wilson(p, n_eff, confidence)
    stderr = math.sqrt(p * (1 - p) / n_eff)
    return Estimate(p, stderr, (low, high), n_items)


def _wilson(p: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion p observed on n (possibly effective, non-integer) trials
    (Wilson 1927, JASA 22:209-212); equals scipy's binomtest(...).proportion_ci(method='wilson') at integer n."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
