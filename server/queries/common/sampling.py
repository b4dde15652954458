"""Sampling: which actors a sampled query keeps, and its counts scaled back to the whole."""

from __future__ import annotations

from server.queries.common.sql import Params


def threshold(factor: float) -> int | None:
    """The cityHash64 bound below which a distinct id is kept (None: the query is not sampled)."""
    return int(factor * 2**64) if factor < 1 else None


def kept_sql(params: Params, bound: int) -> str:
    """The condition keeping an event of the sample: the same row selection as the engine's
    SAMPLE on a sampling key of cityHash64(distinct_id), which takes no bound parameter."""
    return f"cityHash64(distinct_id) < {params.bind(bound, 'UInt64')}"


def scaled(count: int, factor: float) -> int:
    """A count of the sample scaled back to the whole (the reference's correct_result_for_sampling)."""
    return count if factor >= 1 else round(count / factor)
