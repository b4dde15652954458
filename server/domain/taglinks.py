"""Tags linked to a stored definition (an action, a dashboard) through its own link table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from server.domain.insights import tag_ids
from storage.models import Tag


def set_linked_tags(session: Session, link: Any, owner: str, owner_id: int, environment_id: int, tags: list[str]) -> None:
    """Makes `tags` (of the environment's tags, created when new) the tags of row `owner_id`,
    whose links are rows of `link` with the owner's id in column `owner`."""
    column = getattr(link, owner)
    wanted = tag_ids(session, environment_id, tags)
    have = set(session.scalars(select(link.tag_id).where(column == owner_id)))
    if have - wanted:
        session.execute(delete(link).where(column == owner_id, link.tag_id.in_(have - wanted)))
    for tag_id in sorted(wanted - have):
        session.add(link(tag_id=tag_id, **{owner: owner_id}))


def linked_tags(session: Session, link: Any, owner: str, owner_ids: list[int]) -> dict[int, list[str]]:
    """The tag names of each of `owner_ids` (sorted), through `link` as above."""
    column = getattr(link, owner)
    tags: dict[int, list[str]] = {}
    for owner_id, name in session.execute(
        select(column, Tag.name).join(Tag, Tag.id == link.tag_id).where(column.in_(owner_ids)).order_by(Tag.name)
    ):
        tags.setdefault(owner_id, []).append(name)
    return tags
