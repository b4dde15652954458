"""Findings on a funnel's other visualisations: the conversion trend and the time-to-convert histogram."""

from __future__ import annotations

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2
from server.domain.analysis import trends
from server.domain.analysis.text import breakdown, num, share

# Series described in the text (all are in the findings): a breakdown may have many.
TEXT_SERIES = 5


def _trend_finding(series: results_pb2.FunnelTrendsSeries) -> apb.FunnelTrendsSeriesFinding | None:
    """The conversion trend of one series, over the periods somebody entered in; None when nobody did."""
    entered, converted = list(series.reached_from_step_count), list(series.reached_to_step_count)
    if len(entered) == len(series.data):
        # A period nobody entered has rate 0: not a fall in conversion, so it is left out.
        kept = [i for i in range(len(series.data)) if entered[i] > 0]
    else:  # a result without the counts (a cache entry older than them): every period
        kept = list(range(len(series.data)))
    if not kept:
        return None
    label = breakdown(series.breakdown_value) or "Conversion"
    as_trend = results_pb2.TrendsSeries(
        label=label, data=[series.data[i] for i in kept], days=[series.days[i] for i in kept]
    )
    out = apb.FunnelTrendsSeriesFinding(
        conversion=trends.series_finding(as_trend), entered=sum(entered), converted=sum(converted)
    )
    overall = share(out.converted, out.entered)
    if overall is not None:
        out.conversion_percent = overall
    return out


def trends_findings(result: results_pb2.FunnelTrendsResult) -> apb.FunnelTrendsFindings:
    """The findings on a funnel's trends visualisation."""
    found = (_trend_finding(s) for s in result.series)
    return apb.FunnelTrendsFindings(series=[f for f in found if f is not None])


def trends_markdown(out: apb.FunnelTrendsFindings) -> str:
    """The conversion trend findings as short Markdown."""
    if not out.series:
        return "**Conversion trend**: nobody entered the funnel in the range."
    lines: list[str] = []
    for f in out.series[:TEXT_SERIES]:
        c = f.conversion
        direction = {apb.DIRECTION_UP: "up", apb.DIRECTION_DOWN: "down"}.get(c.direction, "flat")
        overall = (
            f" ({f.conversion_percent:.1f}% of {num(f.entered)} over the range)"
            if f.HasField("conversion_percent")
            else ""
        )
        lines.append(
            f"**{c.label}**: conversion {direction} from {c.first_value:.1f}% to {c.last_value:.1f}% "
            f"({c.change:+.1f} points){overall}."
        )
        moves = []
        if c.HasField("largest_rise"):
            moves.append(
                f"largest rise {c.largest_rise.change:+.1f} points ({c.largest_rise.from_day} → {c.largest_rise.to_day})"
            )
        if c.HasField("largest_fall"):
            moves.append(
                f"largest fall {c.largest_fall.change:+.1f} points ({c.largest_fall.from_day} → {c.largest_fall.to_day})"
            )
        if moves:
            joined = "; ".join(moves)
            lines.append(f"- {joined[0].upper()}{joined[1:]}.")
        lines.append(f"- Last period {c.last_value:.1f}% against the average {c.average:.1f}%.")
        if c.anomalies:
            shown = c.anomalies[-trends.TEXT_ANOMALIES :]
            lines.append("- Anomalies: " + ", ".join(f"{p.day} ({p.value:.1f}%)" for p in shown) + ".")
    if len(out.series) > TEXT_SERIES:
        lines.append(f"_{len(out.series) - TEXT_SERIES} more series are in the findings._")
    return "\n".join(lines)


def time_to_convert_findings(result: results_pb2.FunnelTimeToConvertResult) -> apb.TimeToConvertFindings:
    """The findings on a time-to-convert histogram (bins ascending, of equal width)."""
    bins = [(b.bin_start_seconds, b.count) for b in result.bins]
    out = apb.TimeToConvertFindings(converted=sum(c for _, c in bins))
    if len(bins) >= 2:
        out.bin_width_seconds = bins[1][0] - bins[0][0]
    if result.HasField("average_conversion_time"):
        out.average_seconds = result.average_conversion_time
    if out.converted == 0:
        return out
    # The median converter is the ceil(n/2)-th fastest: the first bin whose running count reaches it.
    rank, running = (out.converted + 1) // 2, 0
    for start, count in bins:
        running += count
        if running >= rank:
            out.median_bin_start_seconds = start
            break
    start, count = max(bins, key=lambda b: b[1])  # max() keeps the earliest of equal bins
    out.mode_bin_start_seconds, out.mode_bin_count = start, count
    return out


def duration(seconds: float) -> str:
    """Seconds as people read them: "45s", "12.5m", "3.2h", "2.1d"."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            value = seconds / size
            return f"{value:.1f}{unit}" if value != int(value) else f"{int(value)}{unit}"
    return f"{num(seconds)}s"


def time_to_convert_markdown(out: apb.TimeToConvertFindings) -> str:
    """The time-to-convert findings as short Markdown."""
    if out.converted == 0:
        return "**Time to convert**: nobody converted in the range."
    width = out.bin_width_seconds
    median = out.median_bin_start_seconds
    lines = [
        f"**Time to convert**: {num(out.converted)} actors converted"
        + (f", {duration(out.average_seconds)} on average" if out.HasField("average_seconds") else "")
        + f"; the median converter took {duration(median)} to {duration(median + width)}.",
        f"- Most converted in {duration(out.mode_bin_start_seconds)} to {duration(out.mode_bin_start_seconds + width)} "
        f"({num(out.mode_bin_count)} actors, {out.mode_bin_count * 100.0 / out.converted:.1f}%).",
    ]
    return "\n".join(lines)
