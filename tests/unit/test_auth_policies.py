"""The access policy each RPC declares in the proto, read once at start-up: a server with a method
that declares nothing, or contradicts itself, refuses to start instead of serving it open."""

from __future__ import annotations

import itertools
import re

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2
from google.protobuf.descriptor import ServiceDescriptor

from generated.insights.v1 import insight_pb2, options_pb2, sharing_pb2
from interceptors.auth import method_policies
from server.app import SERVICES

_files = itertools.count()


def service(**methods: options_pb2.MethodPolicy | None) -> ServiceDescriptor:
    """A real service descriptor (as protoc makes them) whose methods carry these policies."""
    n = next(_files)
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"probe/policies_{n}.proto",
        package=f"probe.v{n}",
        syntax="proto3",
        dependency=[empty_pb2.DESCRIPTOR.name, options_pb2.DESCRIPTOR.name],
    )
    declared = proto.service.add(name="Probe")
    for name, policy in methods.items():
        method = declared.method.add(
            name=name, input_type=".google.protobuf.Empty", output_type=".google.protobuf.Empty"
        )
        if policy is not None:
            method.options.Extensions[options_pb2.policy].CopyFrom(policy)
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(proto.SerializeToString())
    return pool.FindServiceByName(f"probe.v{n}.Probe")


def test_each_method_is_keyed_by_its_grpc_path_with_its_declared_policy() -> None:
    read = options_pb2.MethodPolicy(required_scopes=["insight:read", "activity_log:read"])
    public = options_pb2.MethodPolicy(public=True)
    shared = options_pb2.MethodPolicy(sharing_access=True)
    probe = service(Read=read, Open=public, Shared=shared)
    policies = method_policies([probe])
    package = probe.full_name.removesuffix(".Probe")
    assert policies == {
        f"/{package}.Probe/Read": read,
        f"/{package}.Probe/Open": public,
        f"/{package}.Probe/Shared": shared,
    }


def test_the_served_services_declare_the_scopes_the_api_documents() -> None:
    services = [
        insight_pb2.DESCRIPTOR.services_by_name["InsightsService"],
        sharing_pb2.DESCRIPTOR.services_by_name["SharingService"],
    ]
    policies = method_policies(services)
    assert list(policies["/insights.v1.InsightsService/ListInsights"].required_scopes) == ["insight:read"]
    assert list(policies["/insights.v1.InsightsService/CreateInsight"].required_scopes) == ["insight:write"]
    assert policies["/insights.v1.SharingService/UnlockSharedInsight"].public
    assert policies["/insights.v1.SharingService/GetSharedInsight"].sharing_access
    assert len(policies) == sum(len(s.methods) for s in services)


@pytest.mark.parametrize(
    "policy",
    [None, options_pb2.MethodPolicy(), options_pb2.MethodPolicy(required_scopes=[])],
    ids=["no policy", "empty policy", "no scopes"],
)
def test_a_method_without_access_rules_stops_the_start(policy: options_pb2.MethodPolicy | None) -> None:
    allowed = options_pb2.MethodPolicy(required_scopes=["insight:read"])
    probe = service(Fine=allowed, Undeclared=policy)
    with pytest.raises(RuntimeError) as caught:
        method_policies([probe])
    assert str(caught.value) == (
        f"{probe.full_name}.Undeclared declares no required scopes, public or sharing access"
    )


@pytest.mark.parametrize(
    "policy",
    [
        options_pb2.MethodPolicy(public=True, required_scopes=["insight:read"]),
        options_pb2.MethodPolicy(public=True, sharing_access=True),
    ],
    ids=["public with scopes", "public with sharing access"],
)
def test_a_public_method_with_access_rules_stops_the_start(policy: options_pb2.MethodPolicy) -> None:
    probe = service(Contradictory=policy)
    with pytest.raises(RuntimeError) as caught:
        method_policies([probe])
    assert str(caught.value) == f"{probe.full_name}.Contradictory is public but also declares access rules"


@pytest.mark.parametrize(
    "policy",
    [
        options_pb2.MethodPolicy(required_scopes=["insight:read"], sharing_access=True),
        options_pb2.MethodPolicy(sharing_access=True),
    ],
    ids=["scopes and sharing access", "sharing access alone"],
)
def test_sharing_access_goes_with_or_without_scopes(policy: options_pb2.MethodPolicy) -> None:
    probe = service(Shared=policy)
    assert list(method_policies([probe]).values()) == [policy]


def test_every_scope_a_served_method_requires_is_one_object_and_one_action() -> None:
    # has_scope (server/principal.py) reads 'X:write' as granting 'X:read' by splitting at the
    # colon: a required scope with a second colon would be split ambiguously, so none may exist.
    required = {scope for policy in method_policies(SERVICES).values() for scope in policy.required_scopes}
    assert {"insight:read", "sharing_configuration:write"} <= required
    assert all(re.fullmatch(r"[a-z_]+:(read|write)", scope) for scope in required), sorted(required)
