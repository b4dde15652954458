"""The query-runner interface: what the execution layer asks of a query kind, and nothing more."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from generated.insights.v1 import query_pb2, results_pb2

# Runs one SQL statement with its bound parameters on the engine and returns the rows.
Execute = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]

N = TypeVar("N", bound=Message)


@dataclass(frozen=True)
class QueryContext:
    """What a computation needs to know about the environment and the moment."""

    team_id: int
    timezone: str
    week_start_day: int
    now: dt.datetime
    test_account_filters: list[query_pb2.PropertyFilter] = field(default_factory=list)
    # The environment's first event, for date_from "all" (asked only when needed).
    earliest: Callable[[], dt.datetime | None] = lambda: None
    # Event property key → the materialized column holding its text.
    materialized: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """A computed result and the facts the response envelope and the cache need about it."""

    result: results_pb2.InsightResult
    has_more: bool
    date_from: dt.datetime | None
    date_to: dt.datetime | None
    sql: str


class Runner(ABC, Generic[N]):
    """One query kind: checks its node, names its staleness interval, computes, relabels.

    A runner knows nothing of gRPC, the database, the cache or runs: it reaches the engine only
    through the `execute` it is given (tagged, cancellable and bounded by the execution layer), and
    raises QueryError (a path relative to its node) for a node it cannot compute.
    """

    # The oneof member of QueryNode and InsightSource it computes, e.g. "trends_query".
    kind: ClassVar[str]

    @abstractmethod
    def check(self, node: N, ctx: QueryContext) -> None:
        """Raises QueryError (or FailedPrecondition) when `node` cannot be computed; runs nothing."""

    @abstractmethod
    def interval(self, node: N) -> str | None:
        """The interval whose staleness rule its results follow (None: interval-less)."""

    @abstractmethod
    def compute(self, node: N, ctx: QueryContext, execute: Execute) -> Outcome:
        """Checks and computes `node` (blocking: called on a worker thread)."""

    def relabel(self, result: results_pb2.InsightResult, node: N) -> None:
        """Puts names that are not part of the cache key (custom names) on a result computed for a
        node that differs only in them. Kinds without such names keep the default: nothing."""
