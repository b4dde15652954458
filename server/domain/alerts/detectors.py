"""Anomaly detectors of an alert's `detector_config` (reference §7.7): zscore, mad, iqr, threshold, ensemble.

Pure Python on a list of floats. Every detector returns a `Detection`:
- `decided` is False when the (preprocessed) series has fewer points than the detector's minimum
  (zscore/mad/iqr 31, threshold 1): no decision, which is not an error; nothing is triggered.
- `anomaly_scores` is aligned with the input series: a score in [0, 1] for each point that could be
  scored, None for the others (points consumed by preprocessing, or without a full training window).
- `triggered_points` are input indices; `triggered_dates` the matching `dates` when given.

Training: point i is scored against the `window` points that end `training_offset_n` points before
it (offset 1, the default, means "every point before i"): x[i-offset-window+1 .. i-offset]. Only
points with a full window are scored.

Score normalisation (explicit, so scores of different detectors are comparable):
- zscore: z = (x - mean) / std over the training window (sample std). The score is the two-sided
  normal probability mass inside |z|: score = 1 - 2*(1 - Phi(|z|)) = erf(|z| / sqrt(2)); so
  score >= 0.95 <=> |z| >= 1.96. A zero std scores 0 for a point equal to the mean, else 1.
- mad: the robust z = (x - median) / (1.4826 * MAD) (MAD = median absolute deviation; 1.4826 makes
  it consistent with the std of a normal), normalised the same way.
- iqr: fences Q1 - k*IQR and Q3 + k*IQR (k = `multiplier`, linear-interpolated quartiles). With
  e = how far x lies beyond the nearer quartile (0 inside [Q1, Q3]), score = e / (e + k*IQR): 0.5 on
  a fence, towards 1 far outside. IQR flags a point strictly outside the fences; its own cut-off is
  the multiplier, so `threshold` does not apply to it. A zero IQR scores 1 for any point off the
  quartiles.
- threshold: score 1 for a point strictly below `lower_bound` or above `upper_bound`, else 0.
A point is triggered when its score >= `threshold` (zscore, mad) and it lies on the `direction`
side (up: above the centre / upper bound, down: below / lower bound, both: either).

Preprocessing, in order: `smooth_n` > 1 replaces each point by the trailing mean of smooth_n points,
`diffs_n` differences the series that many times; each step drops its leading points (their scores
are None). `lags_n` adds lagged copies as extra features for the multivariate (PyOD) models of the
reference; the univariate detectors here have no use for it, so it is accepted and ignored.

Ensemble: AND fires where every sub-detector fires (score = min), OR where any does (score = max).
AND has no decision when any sub-detector has none; OR decides with the sub-detectors that can.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DetectorType(StrEnum):
    ZSCORE = "zscore"
    MAD = "mad"
    IQR = "iqr"
    THRESHOLD = "threshold"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    BOTH = "both"


MIN_SAMPLES = {DetectorType.ZSCORE: 31, DetectorType.MAD: 31, DetectorType.IQR: 31, DetectorType.THRESHOLD: 1}
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Preprocessing:
    smooth_n: int = 0
    diffs_n: int = 0
    lags_n: int = 0  # accepted, unused by the univariate detectors (see the module docstring)


@dataclass(frozen=True)
class DetectorConfig:
    type: DetectorType | str
    threshold: float = 0.95
    window: int = 30
    training_offset_n: int = 1
    direction: Direction | str = Direction.BOTH
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    multiplier: float = 1.5  # iqr
    lower_bound: float | None = None  # threshold
    upper_bound: float | None = None  # threshold


@dataclass(frozen=True)
class EnsembleConfig:
    operator: str  # "and" | "or"
    detectors: tuple[DetectorConfig, ...]


AnyDetectorConfig = DetectorConfig | EnsembleConfig


@dataclass(frozen=True)
class Detection:
    decided: bool
    anomaly_scores: list[float | None]
    triggered_points: list[int]
    triggered_dates: list[str]
    reason: str | None = None  # why no decision was made

    def is_triggered(self, index: int = -1) -> bool:
        """Whether the point at `index` (default the last) is triggered."""
        n = len(self.anomaly_scores)
        if n == 0:
            return False
        return (index % n) in self.triggered_points


# ----------------------------------------------------------------------------------- validation


def config_problems(config: AnyDetectorConfig, path: str = "detector_config") -> list[tuple[str, str]]:
    """(field, message) for each parameter out of range; empty when valid."""
    if isinstance(config, EnsembleConfig):
        problems = []
        if config.operator not in ("and", "or"):
            problems.append((f"{path}.operator", "operator must be 'and' or 'or'"))
        if len(config.detectors) < 2:
            problems.append((f"{path}.detectors", "an ensemble needs at least 2 detectors"))
        for i, sub in enumerate(config.detectors):
            problems.extend(config_problems(sub, f"{path}.detectors[{i}]"))
        return problems
    problems = []
    if config.type not in tuple(DetectorType):
        return [(f"{path}.type", f"unknown detector type {config.type!r}")]
    if config.direction not in tuple(Direction):
        problems.append((f"{path}.direction", "direction must be up, down or both"))
    checks: list[tuple[str, float, float, float]] = [
        ("threshold", config.threshold, 0.0, 1.0),
        ("window", config.window, 5, 1000),
        ("training_offset_n", config.training_offset_n, 1, 500),
        ("preprocessing.smooth_n", config.preprocessing.smooth_n, 0, 30),
        ("preprocessing.diffs_n", config.preprocessing.diffs_n, 0, 10),
        ("preprocessing.lags_n", config.preprocessing.lags_n, 0, 10),
        ("multiplier", config.multiplier, 0.5, 10.0),
    ]
    for name, value, lo, hi in checks:
        if not lo <= value <= hi:
            problems.append((f"{path}.{name}", f"{name} must be between {lo:g} and {hi:g}"))
    if (
        config.type == DetectorType.THRESHOLD
        and config.lower_bound is not None
        and config.upper_bound is not None
        and config.lower_bound > config.upper_bound
    ):
        problems.append((f"{path}.lower_bound", "lower_bound must not exceed upper_bound"))
    return problems


def config_from_dict(data: Mapping[str, Any]) -> AnyDetectorConfig:
    """Builds a config from its JSON form (`{"type": ..., ...}` or an ensemble)."""
    if data.get("type") == "ensemble":
        return EnsembleConfig(
            operator=str(data.get("operator", "or")),
            detectors=tuple(_single_from_dict(d) for d in data.get("detectors", [])),
        )
    return _single_from_dict(data)


def _single_from_dict(data: Mapping[str, Any]) -> DetectorConfig:
    pre = data.get("preprocessing") or {}
    return DetectorConfig(
        type=str(data.get("type", "")),
        threshold=float(data.get("threshold", 0.95)),
        window=int(data.get("window", 30)),
        training_offset_n=int(data.get("training_offset_n", 1)),
        direction=str(data.get("direction", "both")),
        preprocessing=Preprocessing(
            smooth_n=int(pre.get("smooth_n", 0)),
            diffs_n=int(pre.get("diffs_n", 0)),
            lags_n=int(pre.get("lags_n", 0)),
        ),
        multiplier=float(data.get("multiplier", 1.5)),
        lower_bound=None if data.get("lower_bound") is None else float(data["lower_bound"]),
        upper_bound=None if data.get("upper_bound") is None else float(data["upper_bound"]),
    )


# ----------------------------------------------------------------------------------- preprocessing


def preprocess(values: Sequence[float], pre: Preprocessing) -> tuple[list[float], int]:
    """The preprocessed series and how many leading input points it dropped (its index shift)."""
    xs = [float(v) for v in values]
    shift = 0
    if pre.smooth_n > 1:
        k = pre.smooth_n
        xs = [sum(xs[i - k + 1 : i + 1]) / k for i in range(k - 1, len(xs))]
        shift += k - 1
    for _ in range(pre.diffs_n):
        xs = [b - a for a, b in itertools.pairwise(xs)]
        shift += 1
    return xs, shift


# ----------------------------------------------------------------------------------- scoring


def normal_score(z: float) -> float:
    """1 - 2*(1 - Phi(|z|)) = erf(|z|/sqrt 2): the two-sided normal mass within |z|, in [0, 1]."""
    if math.isinf(z):
        return 1.0
    return math.erf(abs(z) / math.sqrt(2.0))


def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _standardised(x: float, centre: float, spread: float) -> float:
    if spread > 0:
        return (x - centre) / spread
    if x == centre:
        return 0.0
    return math.inf if x > centre else -math.inf


# Each scorer: (point, training values, config) -> (score in [0, 1], signed side, flagged by itself?)
# side > 0 above the centre, < 0 below. `flagged` None means "score >= threshold decides".
Scorer = Callable[[float, list[float], DetectorConfig], tuple[float, float, bool | None]]


def _zscore(x: float, train: list[float], config: DetectorConfig) -> tuple[float, float, bool | None]:
    mean = statistics.fmean(train)
    std = statistics.stdev(train) if len(train) > 1 else 0.0
    z = _standardised(x, mean, std)
    return normal_score(z), z, None


def _mad(x: float, train: list[float], config: DetectorConfig) -> tuple[float, float, bool | None]:
    median = statistics.median(train)
    mad = statistics.median([abs(t - median) for t in train]) * MAD_SCALE
    z = _standardised(x, median, mad)
    return normal_score(z), z, None


def _iqr(x: float, train: list[float], config: DetectorConfig) -> tuple[float, float, bool | None]:
    s = sorted(train)
    q1, q3 = _quantile(s, 0.25), _quantile(s, 0.75)
    iqr = q3 - q1
    k = config.multiplier
    excess = q1 - x if x < q1 else x - q3 if x > q3 else 0.0
    side = -1.0 if x < q1 else 1.0 if x > q3 else 0.0
    if excess == 0:
        return 0.0, 0.0, False
    if iqr == 0:
        return 1.0, side, True
    score = excess / (excess + k * iqr)
    return score, side, excess > k * iqr


_SCORERS: dict[DetectorType, Scorer] = {
    DetectorType.ZSCORE: _zscore,
    DetectorType.MAD: _mad,
    DetectorType.IQR: _iqr,
}


def _matches_direction(side: float, direction: Direction) -> bool:
    if direction == Direction.UP:
        return side > 0
    if direction == Direction.DOWN:
        return side < 0
    return side != 0


def _dates_of(points: list[int], dates: Sequence[str] | None) -> list[str]:
    if dates is None:
        return []
    return [dates[i] for i in points if i < len(dates)]


def detect(
    values: Sequence[float], config: AnyDetectorConfig, dates: Sequence[str] | None = None
) -> Detection:
    """Runs a detector (or an ensemble) over a series, oldest point first."""
    if isinstance(config, EnsembleConfig):
        return _ensemble(values, config, dates)
    dtype = DetectorType(config.type)
    direction = Direction(config.direction)
    xs, shift = preprocess(values, config.preprocessing)
    n = len(values)
    scores: list[float | None] = [None] * n
    minimum = MIN_SAMPLES[dtype]
    if len(xs) < minimum:
        return Detection(
            False, scores, [], [], f"{dtype.value} needs at least {minimum} points, got {len(xs)}"
        )

    triggered: list[int] = []
    if dtype == DetectorType.THRESHOLD:
        for j, x in enumerate(xs):
            above = config.upper_bound is not None and x > config.upper_bound
            below = config.lower_bound is not None and x < config.lower_bound
            hit = (above and direction != Direction.DOWN) or (below and direction != Direction.UP)
            scores[j + shift] = 1.0 if hit else 0.0
            if hit:
                triggered.append(j + shift)
        return Detection(True, scores, triggered, _dates_of(triggered, dates))

    scorer = _SCORERS[dtype]
    offset, window = config.training_offset_n, config.window
    for j in range(offset + window - 1, len(xs)):
        train = xs[j - offset - window + 1 : j - offset + 1]
        score, side, flagged = scorer(xs[j], train, config)
        scores[j + shift] = score
        hit = (score >= config.threshold) if flagged is None else flagged
        if hit and _matches_direction(side, direction):
            triggered.append(j + shift)
    return Detection(True, scores, triggered, _dates_of(triggered, dates))


def _ensemble(values: Sequence[float], config: EnsembleConfig, dates: Sequence[str] | None) -> Detection:
    if config.operator not in ("and", "or"):
        raise ValueError(f"unknown ensemble operator {config.operator!r}")
    results = [detect(values, sub, dates) for sub in config.detectors]
    n = len(values)
    if config.operator == "and":
        undecided = [r for r in results if not r.decided]
        if undecided or not results:
            reason = "; ".join(r.reason or "" for r in undecided) or "empty ensemble"
            return Detection(False, [None] * n, [], [], reason)
        point_sets = [set(r.triggered_points) for r in results]
        points = sorted(set.intersection(*point_sets))
        scores = [_combine([r.anomaly_scores[i] for r in results], min, require_all=True) for i in range(n)]
    else:
        decided = [r for r in results if r.decided]
        if not decided:
            return Detection(False, [None] * n, [], [], "; ".join(r.reason or "" for r in results))
        points = sorted(set().union(*(r.triggered_points for r in decided)))
        scores = [_combine([r.anomaly_scores[i] for r in decided], max, require_all=False) for i in range(n)]
    return Detection(True, scores, points, _dates_of(points, dates))


def _combine(
    scores: list[float | None], pick: Callable[[list[float]], float], *, require_all: bool
) -> float | None:
    known = [s for s in scores if s is not None]
    if not known or (require_all and len(known) < len(scores)):
        return None
    return pick(known)
