"""The actors runner: InsightActorsQuery (a drill-down) behind the query-runner interface.

Only a PathsQuery source is computed (server/queries/paths/actors.py); another kind is
UNIMPLEMENTED naming `source` and the kind. Errors of the source name fields under `source.`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import Unimplemented
from server.queries.actors.persons import person_actors
from server.queries.actors.spec import later_of, page_of
from server.queries.base import DefinitionUnavailable, Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common import nodes
from server.queries.common.errors import QueryError
from server.queries.paths.actors import check_paths_actors, run_paths_actors
from server.queries.paths.runner import PathsRunner

SOURCE = "source"
# The source kinds whose actors are computed.
COMPUTED = ("paths_query",)


class ActorsRunner(Runner[query_pb2.InsightActorsQuery]):
    """The actors (persons or groups) of a path node or edge, one page at a time."""

    kind = "insight_actors_query"

    def check(self, node: query_pb2.InsightActorsQuery, ctx: QueryContext) -> None:
        page_of(node)
        kind = _source_kind(node)
        if kind == "paths_query":
            with _within_source():
                check_paths_actors(node.source.paths_query, ctx)

    def interval(self, node: query_pb2.InsightActorsQuery) -> str | None:
        return "day"

    def compute(self, node: query_pb2.InsightActorsQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        page = page_of(node)
        kind = _source_kind(node)
        if kind not in COMPUTED:
            name = getattr(node.source, kind).DESCRIPTOR.name
            raise Unimplemented(
                f"{SOURCE}: the actors of a {name} are not implemented yet (only a PathsQuery's)",
                reason="ACTORS_SOURCE_NOT_IMPLEMENTED",
                metadata={"field": SOURCE, "kind": name},
            )
        nodes.refuse_later(node, later_of(node), "InsightActorsQuery", "ACTORS_OPTION_NOT_IMPLEMENTED")
        with _within_source():
            found = run_paths_actors(node.source.paths_query, ctx, execute, limit=page.limit, offset=page.offset)
        result = results_pb2.ActorsResult(limit=page.limit, offset=page.offset)
        if found.aggregation.kind == "group":
            assert found.aggregation.group_type_index is not None
            result.group_type_index = found.aggregation.group_type_index
            result.actors.extend(results_pb2.Actor(id=key) for key in found.ids)
        else:
            result.actors.extend(person_actors(execute, ctx.team_id, found.ids))
        return Outcome(
            result=results_pb2.InsightResult(actors=result),
            has_more=found.has_more,
            date_from=found.date_range.date_from,
            date_to=found.date_range.date_to,
            sql=found.sql,
        )

    def references(self, node: query_pb2.InsightActorsQuery) -> list[Reference]:
        """The source's stored definitions, under `source.`."""
        if node.source.WhichOneof("query") != "paths_query":
            return []
        found = PathsRunner().references(node.source.paths_query)
        return [Reference(ref.kind, ref.id, f"{SOURCE}.{ref.path}") for ref in found]


def _source_kind(node: query_pb2.InsightActorsQuery) -> str:
    """The source's oneof member; QueryError naming `source` when there is none."""
    kind = node.source.WhichOneof("query")
    if kind is None:
        raise QueryError("an InsightActorsQuery needs a source (the insight query, e.g. a PathsQuery)", SOURCE)
    return kind


@contextmanager
def _within_source() -> Iterator[None]:
    """Re-raises the source's errors with their field under `source.` (they name it relative to it)."""
    try:
        yield
    except QueryError as exc:
        raise exc.within(SOURCE) from None
    except DefinitionUnavailable as exc:
        raise DefinitionUnavailable(
            exc.kind, exc.definition_id, f"{SOURCE}.{exc.path}", message=exc.message, metadata=exc.metadata
        ) from None
    except Unimplemented as exc:
        field = exc.metadata.get("field")
        if field is None:
            raise
        raise Unimplemented(
            f"{SOURCE}.{exc.message}",
            reason=exc.reason,
            metadata={**exc.metadata, "field": f"{SOURCE}.{field}"},
        ) from None
