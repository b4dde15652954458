"""The actors of a path node or edge: an InsightActorsQuery whose source is a PathsQuery.

The reference (its paths runner's actors query) reads the per-person path rows, one per node of a
path, `path_key` "{i}_{item}", `last_path_key` the node before it (none for the first) and
`path_dropoff_key` the path's last node, and keeps the actors with a row where:

- no key: any (every actor with a path);
- `pathStartKey` S: `last_path_key = S` (they went on from S);
- `pathEndKey` E: `path_key = E` (they reached E);
- both: the two on one row (the direct edge S -> E);
- `pathDropoffKey` D: `path_dropoff_key = D AND path_key = D` (their path ended at D).

The paths are the edges' own (sql.py `paths`: the same events, filters, sampling, sessions, cuts
and truncation), so the keys are exactly the nodes the paths result shows. The edge limit and the
edge weights are not applied (the reference's rows precede them). docs/decisions.md, "Actors of a
path node or edge".
"""

from __future__ import annotations

from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.base import Execute, QueryContext
from server.queries.common import nodes
from server.queries.common.actors import Aggregation
from server.queries.common.dates import QueryDateRange
from server.queries.common.errors import QueryError
from server.queries.common.sql import Params
from server.queries.paths import sql as psql
from server.queries.paths.compute import plan
from server.queries.paths.spec import EXPRESSION_PATH, PathsSpec, paths_spec
from server.queries.sql.expression import run_statement


@dataclass(frozen=True)
class Keys:
    """The drill-down keys of a paths query (None: not given)."""

    start: str | None
    end: str | None
    dropoff: str | None


@dataclass(frozen=True)
class ActorsPage:
    """One page of a drill-down's actor ids (text, ordered) and how they were computed."""

    ids: list[str]
    has_more: bool
    aggregation: Aggregation
    date_range: QueryDateRange
    sql: str


def drill_keys(query: query_pb2.PathsQuery) -> Keys:
    """The keys of `query`; QueryError naming the key when pathDropoffKey comes with another (the
    reference would read the drop-off alone and ignore the other)."""
    pf = query.paths_filter
    # An empty key is no key, as in the reference (it tests them for truth).
    start = pf.path_start_key or None
    end = pf.path_end_key or None
    dropoff = pf.path_dropoff_key or None
    if dropoff is not None:
        for value, name in ((start, "pathStartKey"), (end, "pathEndKey")):
            if value is not None:
                raise QueryError(
                    f"pathDropoffKey picks the actors whose path ends at a node; it does not combine with {name}",
                    f"pathsFilter.{name}",
                )
    return Keys(start, end, dropoff)


def check_paths_actors(query: query_pb2.PathsQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the PathsQuery) when it is invalid; runs nothing."""
    spec = paths_spec(query, drill_down=True)
    drill_keys(query)
    if not spec.later:
        plan(query, spec, ctx)


def run_paths_actors(
    query: query_pb2.PathsQuery, ctx: QueryContext, execute: Execute, *, limit: int, offset: int
) -> ActorsPage:
    """The page of actor ids (`offset`, at most `limit`) of the node or edge `query`'s keys pick.
    QueryError when invalid; Unimplemented (naming the field) for an option not computed yet."""
    spec = paths_spec(query, drill_down=True)
    keys = drill_keys(query)
    nodes.refuse_later(query, spec.later, "PathsQuery", "PATHS_OPTION_NOT_IMPLEMENTED")

    def build(params: Params, spec: PathsSpec, node: query_pb2.PathsQuery, context: psql.Context) -> str:
        return statement(params, spec, node, context, keys, limit=limit, offset=offset)

    made = plan(query, spec, ctx, build)
    paths = (EXPRESSION_PATH,) if spec.expression is not None else ()
    rows = run_statement(execute, made.sql, made.params, paths)
    ids = [str(row[0]) for row in rows]
    return ActorsPage(ids[:limit], len(ids) > limit, spec.aggregation, made.grid, made.sql)


def statement(
    params: Params,
    spec: PathsSpec,
    query: query_pb2.PathsQuery,
    ctx: psql.Context,
    keys: Keys,
    *,
    limit: int,
    offset: int,
) -> str:
    """SQL returning the distinct actor ids (text) of the paths the keys pick, ordered, from
    `offset`, one more than `limit` (so the caller knows whether more follow)."""
    node = "concat(toString(i), '_', p[i].2)"
    previous = "concat(toString(i - 1), '_', p[i - 1].2)"
    # Each path has at least one step (a session without the start/end point is no path).
    after_first = "range(2, length(p) + 1)"
    if keys.dropoff is not None:
        where = f"concat(toString(length(p)), '_', p[length(p)].2) = {params.bind(keys.dropoff, 'String')}"
    elif keys.start is not None and keys.end is not None:
        start = params.bind(keys.start, "String")
        end = params.bind(keys.end, "String")
        where = f"arrayExists(i -> {previous} = {start} AND {node} = {end}, {after_first})"
    elif keys.start is not None:
        where = f"arrayExists(i -> {previous} = {params.bind(keys.start, 'String')}, {after_first})"
    elif keys.end is not None:
        where = f"arrayExists(i -> {node} = {params.bind(keys.end, 'String')}, range(1, length(p) + 1))"
    else:
        where = "1"
    return (
        f"SELECT DISTINCT toString(actor) AS actor_id FROM ({psql.paths(params, spec, query, ctx)}) "
        f"WHERE {where} ORDER BY actor_id "
        f"LIMIT {params.bind(limit + 1, 'Int64')} OFFSET {params.bind(offset, 'Int64')}"
    )
