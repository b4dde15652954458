"""Findings on a funnel's steps: conversion per step, overall conversion, the biggest drop-off."""

from __future__ import annotations

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2
from server.domain.analysis.text import num, share


def findings(result: results_pb2.FunnelStepsResult) -> apb.FunnelFindings:
    """The findings on a steps result; counts are summed over breakdown values (each actor is in one)."""
    out = apb.FunnelFindings()
    if not result.breakdowns:
        return out
    first = result.breakdowns[0].steps
    counts = [sum(b.steps[i].count for b in result.breakdowns if i < len(b.steps)) for i in range(len(first))]
    worst: tuple[float, int] | None = None
    for i, step in enumerate(first):
        finding = apb.FunnelStepFinding(name=step.custom_name or step.name, count=counts[i])
        rate = 100.0 if i == 0 else share(counts[i], counts[i - 1])
        if rate is not None:
            finding.conversion_from_previous_percent = rate
            if i > 0 and (worst is None or rate < worst[0]):
                worst = (rate, i)
        out.steps.append(finding)
    overall = share(counts[-1], counts[0]) if counts else None
    if overall is not None:
        out.overall_conversion_percent = overall
    if worst is not None:
        out.biggest_drop_off_step = worst[1]
        out.biggest_drop_off_lost = counts[worst[1] - 1] - counts[worst[1]]
    return out


def markdown(out: apb.FunnelFindings) -> str:
    """The findings as short Markdown."""
    if not out.steps:
        return "The cached result has no funnel steps."
    if not out.HasField("overall_conversion_percent"):
        return f"**Funnel**: nobody entered the first step ({out.steps[0].name})."
    lines = [
        f"**Funnel**: {num(out.steps[0].count)} entered, {num(out.steps[-1].count)} completed "
        f"({out.overall_conversion_percent:.1f}% overall conversion)."
    ]
    parts = [f"{out.steps[0].name} {num(out.steps[0].count)}"]
    for step in out.steps[1:]:
        rate = f" ({step.conversion_from_previous_percent:.1f}%)" if step.HasField("conversion_from_previous_percent") else ""
        parts.append(f"{step.name} {num(step.count)}{rate}")
    lines.append("- Steps: " + " → ".join(parts) + ".")
    if out.HasField("biggest_drop_off_step"):
        i = out.biggest_drop_off_step
        step, before = out.steps[i], out.steps[i - 1]
        lines.append(
            f"- Biggest drop-off: {before.name} → {step.name}, {step.conversion_from_previous_percent:.1f}% "
            f"converted ({num(out.biggest_drop_off_lost)} lost)."
        )
    return "\n".join(lines)
