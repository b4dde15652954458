"""Conversions between ActionsService messages and the action domain (server.domain.actions)."""

from __future__ import annotations

from generated.insights.v1 import actions_pb2
from server.domain.actions import ActionFields, ActionView
from server.services.convert import common


def action(view: ActionView) -> actions_pb2.Action:
    message = actions_pb2.Action(
        id=view.id,
        name=view.name,
        description=view.description,
        tags=list(view.tags),
        steps=list(view.steps),
        created_at=common.timestamp(view.created_at),
        updated_at=common.timestamp(view.updated_at),
        deleted=view.deleted,
        version=view.version,
    )
    created_by = common.user(view.created_by)
    if created_by is not None:
        message.created_by.CopyFrom(created_by)
    return message


def fields(message: actions_pb2.Action) -> ActionFields:
    """The writable fields of a request's action (output-only fields are ignored)."""
    return ActionFields(
        name=message.name,
        description=message.description,
        tags=list(message.tags),
        steps=list(message.steps),
        deleted=message.deleted,
    )
