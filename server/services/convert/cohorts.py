"""Cohorts: domain views ⇄ protobuf messages."""

from __future__ import annotations

from generated.insights.v1 import cohorts_pb2 as cpb
from server.domain.cohorts import CohortView, Member
from server.services.convert.common import stamp, user


def cohort(view: CohortView) -> cpb.Cohort:
    """The Cohort message of a domain view."""
    row = view.cohort
    message = cpb.Cohort(
        id=row.id,
        name=row.name,
        description=row.description,
        is_static=row.is_static,
        version=row.version,
        deleted=row.deleted,
    )
    if view.filters is not None:
        message.filters.CopyFrom(view.filters)
    if row.count is not None:
        message.count = row.count
    stamp(message.last_calculated_at, row.last_calculated_at)
    stamp(message.created_at, row.created_at)
    stamp(message.updated_at, row.updated_at)
    created_by = user(view.created_by)
    if created_by is not None:
        message.created_by.CopyFrom(created_by)
    return message


def person(member: Member) -> cpb.CohortPerson:
    """The CohortPerson message of a member."""
    message = cpb.CohortPerson(
        id=str(member.id), distinct_ids=member.distinct_ids, properties=member.properties
    )
    stamp(message.created_at, member.created_at)
    return message
