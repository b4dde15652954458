"""Idempotent creates: a caller's request_id remembers the insight its first CreateInsight made (AIP-155)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.errors import InvalidArgument
from storage.models import InsightCreateRequest

# A UUID fits, as AIP-155 suggests, and so does any other caller-made token of this shape.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclasses.dataclass(frozen=True)
class CreateRequest:
    """A create's request id and the fingerprint of what it asked for."""

    request_id: str
    fingerprint: str


def create_request(request_id: str, fields: Any) -> CreateRequest | None:
    """None without a request id; INVALID_ARGUMENT naming `request_id` for one of another shape."""
    if not request_id:
        return None
    if not _REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(
            "request_id must be 1-64 characters of letters, digits and . _ : - (a UUID fits)",
            field="request_id",
        )
    return CreateRequest(request_id, _fingerprint(fields))


def prior_insight(session: Session, environment_id: int, request: CreateRequest) -> int | None:
    """The insight an earlier create with this request id made in the environment, if any.

    The same id with different fields is refused: answering the earlier insight would hide that
    the caller's second request was not what was created.
    """
    found = session.scalars(
        select(InsightCreateRequest).where(
            InsightCreateRequest.environment_id == environment_id,
            InsightCreateRequest.request_id == request.request_id,
        )
    ).first()
    if found is None:
        return None
    if found.fingerprint != request.fingerprint:
        raise InvalidArgument(
            "request_id was already used by a create with other fields; use a new request_id",
            field="request_id",
            reason="REQUEST_ID_REUSED",
        )
    return found.insight_id


def remember(session: Session, environment_id: int, request: CreateRequest, insight_id: int) -> None:
    """Records the request id (a concurrent twin then fails on the unique key and finds this one)."""
    session.add(
        InsightCreateRequest(
            environment_id=environment_id,
            request_id=request.request_id,
            fingerprint=request.fingerprint,
            insight_id=insight_id,
        )
    )


def _fingerprint(fields: Any) -> str:
    values = {}
    for f in dataclasses.fields(fields):
        value = getattr(fields, f.name)
        values[f.name] = value.SerializeToString(deterministic=True).hex() if hasattr(value, "SerializeToString") else value
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()
