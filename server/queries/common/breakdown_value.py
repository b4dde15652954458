"""Breakdown values as the breakdown asks: URLs normalised, numbers put in histogram buckets.

query-engine-semantics §3.6. Shared by trends, funnels and retention; every value bound. A
histogram needs the minimum and maximum of the numbers first (`bounds_sql`, a query of its own
the caller runs), then `buckets` gives the bucket grid the value expression compares with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.common.errors import QueryError
from server.queries.common.properties import property_text
from server.queries.common.sql import Params

# More bins than a chart can show; bounds the bucket arrays bound into every statement.
MAX_BINS = 100
# The last bucket's upper bound is raised by this much so that the maximum falls inside it.
LAST_MARGIN = 0.01


@dataclass(frozen=True)
class Shape:
    """How one breakdown dimension's value is shaped: `bins` > 0 for a histogram."""

    normalize_url: bool = False
    bins: int = 0


PLAIN = Shape()


@dataclass(frozen=True)
class Buckets:
    """A histogram's buckets: [lows[k], highs[k]) labelled labels[k]."""

    lows: tuple[float, ...]
    highs: tuple[float, ...]
    labels: tuple[str, ...]


def shape_of(normalize_url: bool, bins: int | None, normalize_path: str, bins_path: str) -> Shape:
    """A dimension's shape from its fields (None: no bin count given); QueryError naming the field."""
    if bins is None:
        return Shape(normalize_url=normalize_url)
    if not 1 <= bins <= MAX_BINS:
        raise QueryError(f"a histogram has between 1 and {MAX_BINS} bins", bins_path)
    if normalize_url:
        # A URL is no number: both at once would leave one of them without effect.
        raise QueryError("a histogram breakdown does not normalise URLs: choose one", normalize_path)
    return Shape(bins=bins)


def filter_shapes(bf: query_pb2.BreakdownFilter) -> tuple[Shape, ...]:
    """The shape of every dimension of `bf` (one for `breakdown`, one per `breakdowns` item)."""
    if bf.breakdowns:
        shapes = []
        for i, b in enumerate(bf.breakdowns):
            path = f"breakdownFilter.breakdowns[{i}]"
            shapes.append(
                shape_of(
                    b.normalize_url,
                    b.histogram_bin_count if b.HasField("histogram_bin_count") else None,
                    f"{path}.normalize_url",
                    f"{path}.histogram_bin_count",
                )
            )
        # The single-breakdown fields do not apply to a list: refused rather than ignored.
        if bf.HasField("breakdown_histogram_bin_count") or bf.breakdown_normalize_url:
            field = (
                "breakdown_histogram_bin_count"
                if bf.HasField("breakdown_histogram_bin_count")
                else "breakdown_normalize_url"
            )
            raise QueryError(
                "with `breakdowns`, set histogram_bin_count / normalize_url per item",
                f"breakdownFilter.{field}",
            )
        return tuple(shapes)
    return (
        shape_of(
            bf.breakdown_normalize_url,
            bf.breakdown_histogram_bin_count if bf.HasField("breakdown_histogram_bin_count") else None,
            "breakdownFilter.breakdown_normalize_url",
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
    )


def shaped_field(bf: query_pb2.BreakdownFilter) -> str:
    """The single-breakdown field asking for a histogram or URL normalising (to name when refused)."""
    if bf.HasField("breakdown_histogram_bin_count"):
        return "breakdownFilter.breakdown_histogram_bin_count"
    return "breakdownFilter.breakdown_normalize_url"


def label(low: float, high: float) -> str:
    """A bucket's value: the pair as JSON text, each bound as Python prints a float ('[1.0,2.5]')."""
    return json.dumps([low, high], separators=(",", ":"))


def buckets(minimum: float | None, maximum: float | None, bins: int) -> Buckets:
    """The buckets of `bins` equal widths over [minimum, maximum] (none without numbers).

    Bucket k is [min + k·w, min + (k+1)·w) with w = (max - min) / bins, the last upper bound plus
    LAST_MARGIN. All values equal (w = 0): every bucket but the last is empty, so they all fall in
    the last one, [min, min + LAST_MARGIN).
    """
    if minimum is None or maximum is None:
        return Buckets((), (), ())
    width = (maximum - minimum) / bins
    lows = tuple(minimum + k * width for k in range(bins))
    highs = (*tuple(minimum + (k + 1) * width for k in range(bins - 1)), minimum + bins * width + LAST_MARGIN)
    return Buckets(lows, highs, tuple(label(lo, hi) for lo, hi in zip(lows, highs, strict=True)))


def number_sql(text: str) -> str:
    """The value of `text` (a Nullable(String) SQL expression) as a finite Float64, NaN when it is
    missing, no number, or infinite."""
    number = f"toFloat64OrNull({text})"
    return f"if(isFinite(ifNull({number}, nan)), ifNull({number}, nan), nan)"


def bounds_sql(text: str) -> tuple[str, str]:
    """Aggregates giving the minimum and maximum of the numbers `text` holds (NULL when none)."""
    number = number_sql(text)
    return (
        f"minIf(toNullable({number}), NOT isNaN({number}))",
        f"maxIf(toNullable({number}), NOT isNaN({number}))",
    )


def as_float(value: object) -> float | None:
    """An engine's minimum/maximum as a float (None: no number)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def value_sql(
    params: Params,
    key: str,
    source: str,
    shape: Shape,
    null_label: str,
    grid: Buckets | None = None,
) -> str:
    """SQL for the breakdown value (String) of property `key` of `source` (event or person)."""
    return shaped_sql(params, property_text(params, key, source), shape, null_label, grid)


def shaped_sql(params: Params, text: str, shape: Shape, null_label: str, grid: Buckets | None = None) -> str:
    """SQL for a breakdown value (String) from `text` (a Nullable(String) SQL expression, '' and
    NULL meaning no value): the text, its normalised URL, or its bucket's label (`grid`: the
    buckets; None or empty: no number falls in any); `null_label` when none applies."""
    if shape.bins:
        grid = grid or Buckets((), (), ())
        number = number_sql(text)
        lows = params.bind(list(grid.lows), "Array(Float64)")
        highs = params.bind(list(grid.highs), "Array(Float64)")
        labels = params.bind([null_label, *grid.labels], "Array(String)")
        # NaN compares false: a missing or non-numeric value matches no bucket (index 0 → null).
        found = f"arrayFirstIndex((l, h) -> {number} >= l AND {number} < h, {lows}, {highs})"
        return f"arrayElement({labels}, {found} + 1)"
    if shape.normalize_url:
        # trimRight(V, '/?#'), written as a regular expression (the characters form of trimRight
        # is recent in ClickHouse); an empty result is '/'. '' (no value) stays no value.
        value = f"nullIf({text}, '')"
        trimmed = f"replaceRegexpOne({value}, '[/?#]+$', '')"
        text = f"if(empty({trimmed}), '/', {trimmed})"
    return f"ifNull(nullIf({text}, ''), {params.bind(null_label, 'String')})"
