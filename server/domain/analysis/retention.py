"""Findings on a retention result: period-1 retention per cohort, overall and its trend."""

from __future__ import annotations

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2
from server.domain.analysis.text import num, share


def findings(result: results_pb2.RetentionResult) -> apb.RetentionFindings:
    """The findings; cohorts of the same start are summed over breakdown values."""
    sizes: dict[str, list[int]] = {}
    order: list[str] = []
    # Cohort k of n (by start) has seen periods up to n-1-k: the last cohort has no period 1 yet.
    starts = list(dict.fromkeys(c.date for c in result.cohorts))
    observable = set(starts[:-1])
    for cohort in result.cohorts:
        if cohort.date not in observable or len(cohort.values) < 2:
            continue
        if cohort.date not in sizes:
            sizes[cohort.date] = [0, 0]
            order.append(cohort.date)
        sizes[cohort.date][0] += cohort.values[0].count
        sizes[cohort.date][1] += cohort.values[1].count
    out = apb.RetentionFindings()
    rates: list[float] = []
    for date in order:
        size, retained = sizes[date]
        finding = apb.CohortRetentionFinding(date=date, size=size, period_1_count=retained)
        rate = share(retained, size)
        if rate is not None:
            finding.period_1_percent = rate
            rates.append(rate)
        out.cohorts.append(finding)
    overall = share(sum(c.period_1_count for c in out.cohorts), sum(c.size for c in out.cohorts))
    if overall is not None:
        out.period_1_percent = overall
    if len(rates) >= 2:
        out.trend_points = rates[-1] - rates[0]
        out.trend = (
            apb.DIRECTION_UP if rates[-1] > rates[0] else apb.DIRECTION_DOWN if rates[-1] < rates[0] else apb.DIRECTION_FLAT
        )
    return out


def period_name(result: results_pb2.RetentionResult) -> str:
    """The result's own name of period 1 ("Day 1", "Week 1"...)."""
    for cohort in result.cohorts:
        if len(cohort.values) > 1 and cohort.values[1].label:
            return cohort.values[1].label
    return "Period 1"


def markdown(out: apb.RetentionFindings, period: str) -> str:
    """The findings as short Markdown."""
    if not out.HasField("period_1_percent"):
        return f"**Retention**: no cohort has reached {period} with any actor yet."
    retained, size = sum(c.period_1_count for c in out.cohorts), sum(c.size for c in out.cohorts)
    rated = [c for c in out.cohorts if c.HasField("period_1_percent")]
    lines = [
        f"**Retention**: {period} retention is {out.period_1_percent:.1f}% over {len(rated)} non-empty cohorts "
        f"({num(retained)} of {num(size)} actors)."
    ]
    if out.HasField("trend_points"):
        direction = {apb.DIRECTION_UP: "up", apb.DIRECTION_DOWN: "down"}.get(out.trend, "flat")
        first, last = rated[0], rated[-1]
        lines.append(
            f"- Trend: {direction} {abs(out.trend_points):.1f} points from the first cohort "
            f"({first.date[:10]}, {first.period_1_percent:.1f}%) to the last ({last.date[:10]}, {last.period_1_percent:.1f}%)."
        )
    best = max(rated, key=lambda c: c.period_1_percent)
    worst = min(rated, key=lambda c: c.period_1_percent)
    if best is not worst:
        lines.append(
            f"- Best cohort {best.date[:10]} ({best.period_1_percent:.1f}%), worst {worst.date[:10]} ({worst.period_1_percent:.1f}%)."
        )
    return "\n".join(lines)
