"""Actors: the persons or groups behind a part of an insight's result (InsightActorsQuery)."""
