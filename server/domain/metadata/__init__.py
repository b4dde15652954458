"""GenerateInsightMetadata's rules: derive a name and a description from a query, optionally rephrased by a text model."""

from __future__ import annotations

from sqlalchemy import select

from generated.insights.v1 import query_pb2
from server.domain.metadata.describe import Metadata
from server.domain.metadata.kinds import action_ids, generate
from server.domain.metadata.textmodel import TextModel
from server.principal import Principal
from server.queries.common.codec import to_reference_json
from storage.db import Database
from storage.models import Action

__all__ = ["InsightMetadata", "Metadata", "TextModel"]


class InsightMetadata:
    """Names and describes queries; reads only the names of the actions a query uses."""

    def __init__(self, db: Database, text_model: TextModel | None = None):
        self._db = db
        self._text_model = text_model

    @property
    def text_model(self) -> TextModel | None:
        """The operator's text model (AnalyzeInsight rewords its Markdown with it too), or None."""
        return self._text_model

    def generate(self, principal: Principal, environment_id: int, query: query_pb2.QueryNode | None) -> Metadata:
        """The derived text (INVALID_ARGUMENT naming `query` when it is missing or has no node); with
        a text model configured, its rephrasing, else (or on any failure of it) the derived text."""
        env = principal.environment(environment_id)
        draft = generate(query, {})  # validates before anything is read
        assert query is not None
        ids = action_ids(query)
        if ids:
            draft = generate(query, self._action_names(env.id, ids))
        if self._text_model is None:
            return draft
        return self._text_model.refine(draft, to_reference_json(query))

    def _action_names(self, environment_id: int, ids: set[int]) -> dict[int, str]:
        """Stored names of the environment's live actions among `ids` (other ids stay unnamed)."""
        with self._db.session() as session:
            rows = session.execute(
                select(Action.id, Action.name).where(
                    Action.environment_id == environment_id, Action.id.in_(sorted(ids)), Action.deleted.is_(False)
                )
            ).all()
        return {int(i): str(name) for i, name in rows if name}
