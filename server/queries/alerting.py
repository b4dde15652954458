"""What alerts ask of a query kind: is an alert's config valid for a node, which query a check runs,
and which values of its result are compared with the threshold.

The alerts domain knows no query kind: it finds the kind's `AlertValues` in the registry (beside its
runner) and compares the `Watched` values it returns. Conditions, thresholds, breaches, detectors and
messages stay in the domain.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from generated.insights.v1 import alerts_pb2, results_pb2

N = TypeVar("N", bound=Message)

ABSOLUTE_VALUE = "absolute_value"
RELATIVE_INCREASE = "relative_increase"
RELATIVE_DECREASE = "relative_decrease"
# Alerts evaluate at most this many breakdown values (reference §7.3).
MAX_BREAKDOWN_VALUES = 25

BreakdownValue = str | int | float | bool | tuple[str, ...] | None


@dataclass(frozen=True)
class AlertAsk:
    """What an alert asks of its insight, as the domain stores it (the reference's JSON)."""

    condition: str  # ABSOLUTE_VALUE, RELATIVE_INCREASE or RELATIVE_DECREASE
    config: Mapping[str, Any]  # the stored config, e.g. {"type": "TrendsAlertConfig", "series_index": 0}
    has_upper: bool = False  # the threshold has an upper bound
    detector: bool = False  # an anomaly detector decides instead of the bounds


@dataclass(frozen=True)
class Problem:
    """Why an alert's config does not fit its insight; `field` is relative to the alert message.

    `unimplemented`: the combination is valid but not computed by this service yet.
    """

    field: str
    message: str
    unimplemented: bool = False


@dataclass(frozen=True)
class Watched:
    """One watched line of a result (a breakdown value of the chosen series, or the whole of it).

    `points` are in time order; a result with no time axis has one point. The checked point is
    `points[-anchor_back]` and the previous one the point before it; points missing because the
    line is shorter count as 0.
    """

    label: str
    breakdown_value: BreakdownValue
    points: tuple[float, ...]
    days: tuple[str, ...] = ()
    anchor_back: int = 1


class AlertValueError(ValueError):
    """The result cannot give the watched values (the check errors)."""


class AlertValues(ABC, Generic[N]):
    """How alerts read one query kind; registered beside the kind's runner (registry.ALERTS)."""

    # The reference's discriminator of the stored config, e.g. "TrendsAlertConfig".
    config_type: ClassVar[str]
    # The field of insights.v1.Alert that carries this kind's config, e.g. "config".
    config_field: ClassVar[str]

    @abstractmethod
    def config_json(self, alert: alerts_pb2.Alert) -> dict[str, Any]:
        """The stored (reference JSON) form of the alert's config for this kind, defaults applied."""

    @abstractmethod
    def problems(self, node: N, ask: AlertAsk) -> list[Problem]:
        """What in `ask` does not fit `node` (empty when the alert can be evaluated)."""

    @abstractmethod
    def query(self, node: N, ask: AlertAsk, history: int | None = None) -> N:
        """The node a check computes: a copy of `node` narrowed for the check. `history`: how many
        points a detector needs (None without a detector)."""

    @abstractmethod
    def watched(self, node: N, result: results_pb2.InsightResult, ask: AlertAsk) -> list[Watched]:
        """The watched lines of the result of `query(node, ...)`, at most MAX_BREAKDOWN_VALUES; an
        empty list when the result has none. AlertValueError when the result is not this kind's."""

    @abstractmethod
    def subject(self, node: N, ask: AlertAsk) -> str:
        """How breach messages name the value, e.g. "The trend value"."""

    def unit(self, ask: AlertAsk) -> str:
        """The unit shown after values and bounds in messages (e.g. "%"); none by default."""
        return ""
