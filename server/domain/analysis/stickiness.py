"""Findings on a stickiness result: how many actors come back on most intervals, and how often."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2
from server.domain.analysis.text import change_percent, num, percent


def exact_counts(series: results_pb2.StickinessSeries, cumulative: bool) -> list[float]:
    """Actors active in exactly 1..N intervals (a cumulative item holds "at least k": differences)."""
    data = list(series.data)
    if not cumulative:
        return data
    return [data[i] - (data[i + 1] if i + 1 < len(data) else 0.0) for i in range(len(data))]


def series_finding(series: results_pb2.StickinessSeries, cumulative: bool) -> apb.StickinessSeriesFinding:
    """The findings on one series."""
    exact = exact_counts(series, cumulative)
    intervals = len(exact)
    actors = sum(exact)
    # "Most" intervals: strictly more than half of them.
    threshold = intervals // 2 + 1
    most = sum(exact[threshold - 1 :])
    finding = apb.StickinessSeriesFinding(
        label=series.label, actors=actors, intervals=intervals, most_threshold=threshold, most_actors=most
    )
    if actors > 0:
        finding.most_percent = most * 100.0 / actors
        finding.average_intervals = sum((k + 1) * c for k, c in enumerate(exact)) / actors
        # max() keeps the first of equal counts: the smallest interval count on ties.
        finding.typical_intervals = max(range(intervals), key=lambda k: exact[k]) + 1
    return finding


def _compare(items: Sequence[results_pb2.StickinessSeries], cumulative: bool) -> list[apb.CompareFinding]:
    """Each current item against the previous item that follows it (the result interleaves them)."""
    found = []
    for current, previous in pairwise(items):
        if current.compare_label != "current" or previous.compare_label != "previous":
            continue
        finding = apb.CompareFinding(
            label=current.label,
            current_total=sum(exact_counts(current, cumulative)),
            previous_total=sum(exact_counts(previous, cumulative)),
        )
        relative = change_percent(finding.previous_total, finding.current_total)
        if relative is not None:
            finding.change_percent = relative
        found.append(finding)
    return found


def findings(result: results_pb2.StickinessResult, cumulative: bool) -> apb.StickinessFindings:
    """The findings on a stickiness result (`cumulative`: the query's computedAs)."""
    items = list(result.series)
    current = [s for s in items if s.compare_label != "previous" and len(s.data) > 0]
    return apb.StickinessFindings(
        series=[series_finding(s, cumulative) for s in current], compare=_compare(items, cumulative)
    )


def _unit(series: results_pb2.StickinessSeries) -> str:
    """The interval's plural name from the result's labels ("1 day" -> "days"), "intervals" otherwise."""
    if series.labels:
        words = series.labels[-1].split()
        if len(words) >= 2 and words[0].isdigit():
            return words[1] if words[1].endswith("s") else words[1] + "s"
    return "intervals"


def markdown(out: apb.StickinessFindings, result: results_pb2.StickinessResult) -> str:
    """The findings as short Markdown."""
    if not out.series:
        return "The cached result has no stickiness series."
    unit = _unit(result.series[0]) if result.series else "intervals"
    lines: list[str] = []
    for f in out.series:
        if not f.HasField("most_percent"):
            lines.append(f"**{f.label}**: no actor was active in the range.")
            continue
        lines.append(
            f"**{f.label}**: {num(f.actors)} actors; {num(f.most_actors)} ({f.most_percent:.1f}%) were active on "
            f"most {unit} (at least {f.most_threshold} of {f.intervals})."
        )
        lines.append(
            f"- Active on {f.average_intervals:.2f} {unit} on average; the most common count is {f.typical_intervals}."
        )
    for c in out.compare:
        relative = f" ({percent(c.change_percent)})" if c.HasField("change_percent") else ""
        lines.append(
            f"**{c.label} against the previous period**: {num(c.current_total)} actors vs {num(c.previous_total)}{relative}."
        )
    return "\n".join(lines)
