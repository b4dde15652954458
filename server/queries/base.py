"""The query-runner interface: what the execution layer asks of a query kind, and nothing more."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from google.protobuf.message import Message

from generated.insights.v1 import actions_pb2, query_pb2, results_pb2
from server.errors import FailedPrecondition
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.dates import QueryDateRange

# Runs one SQL statement with its bound parameters on the engine and returns the rows:
# execute(sql, params) or execute(sql, params, settings), where `settings` (engine settings such as
# readonly and limits; SQL insights pass them) travel with the call, never in the SQL text. Typed
# loosely so that the two-argument callables of kinds that pass no settings still fit.
Execute = Callable[..., Sequence[Sequence[Any]]]

N = TypeVar("N", bound=Message)


@dataclass(frozen=True)
class Reference:
    """A stored definition a node refers to: its kind ("action" or "cohort"), its id, and the
    field of the node (relative to it) that names it."""

    kind: str
    id: int
    path: str


@dataclass(frozen=True)
class ActionDefinition:
    """What the compiler needs of a stored action."""

    id: int
    name: str
    version: int
    steps: tuple[actions_pb2.ActionStep, ...] = ()


@dataclass(frozen=True)
class Definitions:
    """The stored definitions a computation uses, loaded for its environment: the ones its node
    names and those they refer to in turn (a cohort's nested cohorts and actions)."""

    actions: Mapping[int, ActionDefinition] = field(default_factory=dict)
    cohorts: Mapping[int, CohortDefinition] = field(default_factory=dict)

    def versions(self) -> tuple[tuple[str, int, int, str], ...]:
        """(kind, id, version, name) of every definition, sorted: what a cache key holds of them, so
        that a changed definition computes anew (the name too: results are labelled with it)."""
        found = [("action", a.id, a.version, a.name) for a in self.actions.values()]
        found += [("cohort", c.id, c.version, c.name) for c in self.cohorts.values()]
        return tuple(sorted(found))


class DefinitionUnavailable(FailedPrecondition):
    """A definition a node names is unknown, deleted or of another environment, or (`message`) one
    it refers to cannot be used (the caller fixes the definition or the query; `path` is relative
    to the node: the execution layer prefixes the request's path)."""

    def __init__(
        self,
        kind: str,
        definition_id: int,
        path: str,
        *,
        message: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        super().__init__(
            message or f"{kind} {definition_id} does not exist or is deleted",
            reason=f"{kind.upper()}_UNAVAILABLE",
            metadata={**(metadata or {}), kind: str(definition_id), "field": path},
        )
        self.kind = kind
        self.definition_id = definition_id
        self.path = path


# Loads the definitions `references` name (and what they refer to) for an environment; raises
# DefinitionUnavailable for a named one that is missing or deleted. Blocking (reads the database).
LoadDefinitions = Callable[[int, Sequence[Reference]], Definitions]


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
    # The stored definitions (actions, cohorts) the node refers to, loaded by the execution layer.
    definitions: Definitions = field(default_factory=Definitions)


@dataclass(frozen=True)
class Outcome:
    """A computed result and the facts the response envelope and the cache need about it."""

    result: results_pb2.InsightResult
    has_more: bool
    date_from: dt.datetime | None
    date_to: dt.datetime | None
    sql: str
    # Whether the result stops changing once date_to is well past (it reads events of its range
    # only): the cache then never recomputes it. False for a kind whose range does not bound what
    # it reads (a SQL insight).
    settles: bool = True

    @classmethod
    def of(cls, result: results_pb2.InsightResult, computed: Computed) -> Outcome:
        """The outcome of a kind's computed result, with the facts its computation reported."""
        return cls(
            result=result,
            has_more=computed.has_more,
            date_from=computed.date_range.date_from,
            date_to=computed.date_range.date_to,
            sql=computed.sql,
        )


class Computed(Protocol):
    """What a kind's computation reports beside its result (e.g. TrendsOutcome, FunnelsOutcome)."""

    @property
    def has_more(self) -> bool: ...

    @property
    def date_range(self) -> QueryDateRange: ...

    @property
    def sql(self) -> str: ...


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

    def references(self, node: N) -> list[Reference]:
        """The stored definitions `node` names (loaded into QueryContext.definitions before it is
        computed, their versions part of its cache key). Kinds that name none keep the default."""
        return []

    def relabel(self, result: results_pb2.InsightResult, node: N, definitions: Definitions) -> None:
        """Puts names that are not part of the cache key (custom names) on a result computed for a
        node that differs only in them (`definitions`: those the node names, as loaded for the key).
        Kinds without such names keep the default: nothing."""
