"""ActionsService calls bound to one environment and one caller's key, and step builders."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import field_mask_pb2

from generated.insights.v1 import actions_pb2 as apb
from generated.insights.v1 import actions_pb2_grpc as agrpc
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import Metadata, Server, Tenant, bearer

M = apb.ActionStepMatching


def step(**parts: Any) -> apb.ActionStep:
    return apb.ActionStep(**parts)


def event_filter(key: str, value: str, operator: int = qpb.PROPERTY_OPERATOR_EXACT) -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key=key,
        value=qpb.PropertyValue(string_value=value),
        operator=operator,
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
    )


@dataclass
class ActionsApi:
    """ActionsService calls in one environment with one key."""

    stub: agrpc.ActionsServiceStub
    environment_id: int
    metadata: Metadata
    timeout: float = 15.0

    @classmethod
    def of(cls, server: Server, tenant: Tenant, *scopes: str) -> ActionsApi:
        return cls(
            agrpc.ActionsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key(*scopes))
        )

    def as_key(self, raw_key: str) -> ActionsApi:
        return ActionsApi(self.stub, self.environment_id, bearer(raw_key), self.timeout)

    def in_environment(self, environment_id: int) -> ActionsApi:
        return ActionsApi(self.stub, environment_id, self.metadata, self.timeout)

    async def create(self, **fields: Any) -> apb.Action:
        request = apb.CreateActionRequest(environment_id=self.environment_id, action=apb.Action(**fields))
        return cast(
            apb.Action, await self.stub.CreateAction(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def get(self, action_id: int) -> apb.Action:
        request = apb.GetActionRequest(environment_id=self.environment_id, id=action_id)
        return cast(
            apb.Action, await self.stub.GetAction(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def list(self, **filters: Any) -> apb.ListActionsResponse:
        request = apb.ListActionsRequest(environment_id=self.environment_id, **filters)
        response = await self.stub.ListActions(request, metadata=self.metadata, timeout=self.timeout)
        return cast(apb.ListActionsResponse, response)

    async def list_ids(self, **filters: Any) -> builtins.list[int]:
        return [a.id for a in (await self.list(**filters)).results]

    async def update(self, action_id: int, mask: Sequence[str] | None = None, **fields: Any) -> apb.Action:
        request = apb.UpdateActionRequest(
            environment_id=self.environment_id, id=action_id, action=apb.Action(**fields)
        )
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=builtins.list(mask)))
        return cast(
            apb.Action, await self.stub.UpdateAction(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def delete(self, action_id: int) -> apb.Action:
        request = apb.DeleteActionRequest(environment_id=self.environment_id, id=action_id)
        return cast(
            apb.Action, await self.stub.DeleteAction(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def activity(
        self, action_id: int | None = None, page: int = 0, limit: int = 0
    ) -> apb.ListActionActivityResponse:
        request = apb.ListActionActivityRequest(environment_id=self.environment_id, page=page, limit=limit)
        if action_id is not None:
            request.id = action_id
        response = await self.stub.ListActionActivity(request, metadata=self.metadata, timeout=self.timeout)
        return cast(apb.ListActionActivityResponse, response)
