"""Independent pure-Python reference ("oracle") for the trends engine.

Written from docs/engine-semantics.md and the reference notes only; it never reads or imports
anything under server/queries/, so that the engine's results can be checked against it.
"""

from tests.oracle.trends import (
    NULL_LABEL,
    OTHER_LABEL,
    DateRange,
    Event,
    FailedPrecondition,
    InvalidArgument,
    OracleError,
    TrendsOutput,
    compute_trends,
    previous_date_range,
    resolve_date_range,
)

__all__ = [
    "NULL_LABEL",
    "OTHER_LABEL",
    "DateRange",
    "Event",
    "FailedPrecondition",
    "InvalidArgument",
    "OracleError",
    "TrendsOutput",
    "compute_trends",
    "previous_date_range",
    "resolve_date_range",
]
