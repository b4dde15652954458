"""The time_to_convert visualisation: a histogram of the seconds actors took from funnelFromStep
to funnelToStep (query-engine-semantics §4.5), over the per-person walk of the steps view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common import sampling
from server.queries.common.sql import Params
from server.queries.funnels import sql as fsql
from server.queries.funnels.spec import FunnelSpec

MAX_BIN_COUNT = 90  # binCount is clamped to [1, 90], as the reference
MAX_AUTO_BIN_COUNT = 60  # the automatic count, ceil(cbrt(actors)), is clamped to [1, 60]
EMPTY_WIDTH = 60  # the bin width when every conversion took the same whole second


def statement(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: fsql.Context) -> str:
    """SQL returning one row per whole second of conversion time: (second, actors, sum µs, max µs).

    Only actors who completed funnelToStep; their time is the sum of their step conversions from
    funnelFromStep + 1 to funnelToStep. Grouping by whole seconds loses nothing: every bin starts
    at a whole second and is whole seconds wide, so floor((t - from) / width) only depends on
    floor(t); the sums and maxima give the exact mean and upper edge.
    """
    walks = fsql.walks(params, spec, query, ctx)
    took = " + ".join(f"toInt64(d{k})" for k in range(spec.from_step + 1, spec.to_step + 1))
    reached = f"bitTest(bits, {params.bind(spec.to_step, 'UInt8')})"
    converted = f"SELECT {took} AS took FROM ({walks}) WHERE {reached}"
    return (
        "SELECT intDiv(took, 1000000) AS second, count() AS actors, sum(took) AS total, max(took) AS longest "
        f"FROM ({converted}) GROUP BY second ORDER BY second"
    )


def shape(spec: FunnelSpec, rows: Sequence[Sequence[Any]]) -> results_pb2.FunnelsResult:
    """The bins (bin_count + 1 of them, zero-filled) and the mean from the per-second rows."""
    seconds = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]
    actors = sum(c for _, c, _, _ in seconds)
    low = min((s for s, _, _, _ in seconds), default=0)
    # ceil(max t) in whole seconds, from integer microseconds (exact); 1 when nobody converted.
    high = -(-max(m for _, _, _, m in seconds) // 1_000_000) if seconds else 1
    bins = bin_count(spec.bin_count, actors)
    width = -(-(high - low) // bins) or EMPTY_WIDTH
    counts = [0] * (bins + 1)
    for second, count, _, _ in seconds:
        counts[(second - low) // width] += count
    out = results_pb2.FunnelTimeToConvertResult()
    for i, count in enumerate(counts):
        out.bins.add(bin_start_seconds=low + i * width, count=sampling.scaled(count, spec.sampling))
    if actors:
        out.average_conversion_time = round(sum(t for _, _, t, _ in seconds) / actors / 1e6, 2)
    return results_pb2.FunnelsResult(time_to_convert=out, is_udf=True)


def bin_count(asked: int | None, actors: int) -> int:
    """binCount clamped to [1, 90], or ceil(cbrt(actors)) clamped to [1, 60] when not given."""
    if asked is not None:
        return min(max(asked, 1), MAX_BIN_COUNT)
    root = int(float(actors) ** (1 / 3))
    # cbrt in floating point may land just off an exact cube; correct it to the integer ceiling.
    while root**3 < actors:
        root += 1
    while root > 0 and (root - 1) ** 3 >= actors:
        root -= 1
    return min(max(root, 1), MAX_AUTO_BIN_COUNT)

