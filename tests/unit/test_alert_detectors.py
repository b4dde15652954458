"""Pure-function tests of the anomaly detectors (reference §7.7)."""

from __future__ import annotations

import math
import random

import pytest

from server.domain.alerts.detectors import (
    DetectorConfig,
    EnsembleConfig,
    Preprocessing,
    config_from_dict,
    config_problems,
    detect,
    normal_score,
    preprocess,
)

STATISTICAL = ["zscore", "mad", "iqr"]


def noisy(n: int = 40, seed: int = 7, level: float = 100.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.uniform(-3, 3) for _ in range(n)]


def with_spike(values: list[float], index: int, delta: float) -> list[float]:
    out = list(values)
    out[index] += delta
    return out


def test_normal_score_mapping() -> None:
    assert normal_score(0) == 0
    assert normal_score(1.959964) == pytest.approx(0.95, abs=1e-6)
    assert normal_score(-1.959964) == pytest.approx(0.95, abs=1e-6)
    assert normal_score(math.inf) == 1
    assert 0 < normal_score(1) < normal_score(2) < normal_score(3) < 1


@pytest.mark.parametrize("kind", STATISTICAL)
def test_planted_spike_is_flagged(kind: str) -> None:
    series = with_spike(noisy(40), 35, 50)
    dates = [f"2025-01-{i + 1:02d}" for i in range(40)]
    d = detect(series, DetectorConfig(kind), dates)
    assert d.decided
    assert 35 in d.triggered_points
    assert "2025-01-36" in d.triggered_dates
    score = d.anomaly_scores[35]
    # iqr flags outside its fences (score > 0.5); zscore/mad by score >= threshold
    assert score is not None and (0.5 if kind == "iqr" else 0.95) <= score <= 1
    assert all(s is None for s in d.anomaly_scores[:30])  # no full training window yet
    assert all(s is not None and 0 <= s <= 1 for s in d.anomaly_scores[30:])


@pytest.mark.parametrize("kind", STATISTICAL)
def test_flat_series_is_not_flagged(kind: str) -> None:
    d = detect([5.0] * 40, DetectorConfig(kind))
    assert d.decided and d.triggered_points == []
    assert all(s == 0 for s in d.anomaly_scores[30:])


@pytest.mark.parametrize("kind", STATISTICAL)
def test_noise_alone_is_not_flagged(kind: str) -> None:
    cfg = DetectorConfig(kind, threshold=0.999) if kind != "iqr" else DetectorConfig(kind, multiplier=3)
    assert detect(noisy(60, seed=3), cfg).triggered_points == []


@pytest.mark.parametrize("kind", STATISTICAL)
def test_below_minimum_samples_no_decision(kind: str) -> None:
    d = detect(with_spike(noisy(30), 29, 500), DetectorConfig(kind, window=5))
    assert not d.decided
    assert d.triggered_points == [] and d.triggered_dates == []
    assert d.anomaly_scores == [None] * 30
    assert d.reason is not None and "31" in d.reason
    assert detect(noisy(31), DetectorConfig(kind)).decided


def test_threshold_detector_minimum_one_and_bounds() -> None:
    assert not detect([], DetectorConfig("threshold", upper_bound=1)).decided
    d = detect([5.0], DetectorConfig("threshold", upper_bound=4))
    assert d.decided and d.triggered_points == [0] and d.anomaly_scores == [1.0]
    d = detect(
        [1, 10, 4, -2, 4],
        DetectorConfig("threshold", lower_bound=0, upper_bound=4),
        ["a", "b", "c", "d", "e"],
    )
    assert d.triggered_points == [1, 3]  # equality (4) does not trigger
    assert d.triggered_dates == ["b", "d"]
    assert d.anomaly_scores == [0, 1, 0, 1, 0]


@pytest.mark.parametrize("kind", [*STATISTICAL, "threshold"])
def test_direction(kind: str) -> None:
    series = with_spike(with_spike(noisy(45), 36, 60), 40, -60)
    extra = {"lower_bound": 50.0, "upper_bound": 150.0} if kind == "threshold" else {}
    up = detect(series, DetectorConfig(kind, direction="up", **extra)).triggered_points  # type: ignore[arg-type]
    down = detect(series, DetectorConfig(kind, direction="down", **extra)).triggered_points  # type: ignore[arg-type]
    both = detect(series, DetectorConfig(kind, direction="both", **extra)).triggered_points  # type: ignore[arg-type]
    assert 36 in up and 40 not in up
    assert 40 in down and 36 not in down
    assert {36, 40} <= set(both)


def test_training_offset_excludes_recent_points() -> None:
    # a level shift at 35: with offset 5 every shifted point is scored against the old level only;
    # with offset 1 the later points train on earlier shifted ones and score lower
    series = noisy(40)[:35] + [200.0] * 5
    near = detect(series, DetectorConfig("zscore", training_offset_n=1))
    far = detect(series, DetectorConfig("zscore", training_offset_n=5))
    assert [p for p in far.triggered_points if p >= 35] == [35, 36, 37, 38, 39]
    near39, far39 = near.anomaly_scores[39], far.anomaly_scores[39]
    assert near39 is not None and far39 is not None and near39 < far39
    # the first scored point needs offset + window points before the end of its window
    assert far.anomaly_scores[33] is None and far.anomaly_scores[34] is not None
    assert near.anomaly_scores[29] is None and near.anomaly_scores[30] is not None


def test_preprocessing_smoothing_and_differencing() -> None:
    xs, shift = preprocess([1, 2, 3, 4, 5], Preprocessing(smooth_n=2))
    assert xs == [1.5, 2.5, 3.5, 4.5] and shift == 1
    xs, shift = preprocess([1, 4, 9, 16], Preprocessing(diffs_n=1))
    assert xs == [3, 5, 7] and shift == 1
    xs, shift = preprocess([1, 4, 9, 16], Preprocessing(diffs_n=2))
    assert xs == [2, 2] and shift == 2
    xs, shift = preprocess([1, 2], Preprocessing(lags_n=3))
    assert xs == [1, 2] and shift == 0


def test_differencing_detects_a_jump_on_a_trend() -> None:
    # a steady ramp with one step: raw z-scores see a trend, differences see the jump
    series = [float(i) for i in range(45)]
    series = series[:38] + [s + 40 for s in series[38:]]
    d = detect(series, DetectorConfig("zscore", preprocessing=Preprocessing(diffs_n=1)))
    assert d.decided and d.triggered_points == [38]
    assert d.anomaly_scores[0] is None  # consumed by differencing


def test_minimum_counts_after_preprocessing() -> None:
    assert not detect(noisy(31), DetectorConfig("zscore", preprocessing=Preprocessing(smooth_n=3))).decided


def test_iqr_multiplier() -> None:
    series = with_spike(noisy(40), 35, 12)
    assert 35 in detect(series, DetectorConfig("iqr", multiplier=0.5)).triggered_points
    assert 35 not in detect(series, DetectorConfig("iqr", multiplier=10)).triggered_points


ZSCORE = DetectorConfig("zscore")
THRESHOLD_UP = DetectorConfig("threshold", upper_bound=130)


def test_ensemble_and_or() -> None:
    series = with_spike(with_spike(noisy(40), 33, 50), 36, 25)  # 33: both flag; 36: only z-score
    series[38] = 119  # neither
    z = detect(series, ZSCORE)
    assert {33, 36} <= set(z.triggered_points)
    t = detect(series, THRESHOLD_UP)
    assert 33 in t.triggered_points and 36 not in t.triggered_points

    both = detect(series, EnsembleConfig("and", (ZSCORE, THRESHOLD_UP)))
    either = detect(series, EnsembleConfig("or", (ZSCORE, THRESHOLD_UP)))
    assert both.decided and either.decided
    assert both.triggered_points == sorted(set(z.triggered_points) & set(t.triggered_points))
    assert either.triggered_points == sorted(set(z.triggered_points) | set(t.triggered_points))
    assert 33 in both.triggered_points and 36 not in both.triggered_points and 36 in either.triggered_points
    zs, ts = z.anomaly_scores[36], t.anomaly_scores[36]
    assert zs is not None and ts is not None
    assert both.anomaly_scores[36] == min(zs, ts)
    assert either.anomaly_scores[36] == max(zs, ts)
    assert both.anomaly_scores[5] is None  # z-score has no window there
    assert either.anomaly_scores[5] == t.anomaly_scores[5]
    assert both.is_triggered(33) and not both.is_triggered()


def test_ensemble_with_an_undecided_member() -> None:
    short = [1.0, 2.0, 500.0]
    assert not detect(short, EnsembleConfig("and", (ZSCORE, THRESHOLD_UP))).decided
    either = detect(short, EnsembleConfig("or", (ZSCORE, THRESHOLD_UP)))
    assert either.decided and either.triggered_points == [2]
    assert not detect(short, EnsembleConfig("or", (ZSCORE, DetectorConfig("mad")))).decided


def test_config_problems_and_parsing() -> None:
    assert config_problems(ZSCORE) == []
    bad = DetectorConfig(
        "zscore",
        threshold=1.5,
        window=2,
        training_offset_n=0,
        direction="sideways",
        preprocessing=Preprocessing(smooth_n=31, lags_n=11),
        multiplier=20,
    )
    fields = {f for f, _ in config_problems(bad)}
    assert fields == {
        "detector_config.direction",
        "detector_config.threshold",
        "detector_config.window",
        "detector_config.training_offset_n",
        "detector_config.preprocessing.smooth_n",
        "detector_config.preprocessing.lags_n",
        "detector_config.multiplier",
    }
    assert config_problems(DetectorConfig("copula"))[0][0] == "detector_config.type"
    ens = EnsembleConfig("xor", (ZSCORE,))
    assert {f for f, _ in config_problems(ens)} == {"detector_config.operator", "detector_config.detectors"}
    parsed = config_from_dict(
        {
            "type": "ensemble",
            "operator": "and",
            "detectors": [
                {"type": "zscore", "threshold": 0.9, "window": 10, "preprocessing": {"smooth_n": 3}},
                {"type": "threshold", "upper_bound": 5},
            ],
        }
    )
    assert isinstance(parsed, EnsembleConfig) and parsed.operator == "and"
    assert parsed.detectors[0] == DetectorConfig(
        "zscore", threshold=0.9, window=10, preprocessing=Preprocessing(smooth_n=3)
    )
    assert parsed.detectors[1].upper_bound == 5 and parsed.detectors[1].lower_bound is None
