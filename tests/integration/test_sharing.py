"""Sharing through the real server: configuration, rotation, passwords, unlocking and shared reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from google.rpc import error_details_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import common_pb2
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from tests.integration.itkit import (
    Api,
    Clock,
    Metadata,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
    rich_status,
    sharing_clock,
    trends_viz,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def clock(server: Server) -> Iterator[Clock]:
    with sharing_clock(server) as fake:
        yield fake


@dataclass
class Share:
    """SharingService calls of one environment's key."""

    stub: sgrpc.SharingServiceStub
    environment_id: int
    metadata: Metadata

    async def get(self, insight_id: int) -> spb.SharingConfiguration:
        request = spb.GetSharingConfigurationRequest(
            environment_id=self.environment_id, insight_id=insight_id
        )
        return await self.stub.GetSharingConfiguration(request, metadata=self.metadata, timeout=10)

    async def update(
        self, insight_id: int, mask: list[str] | None = None, **fields: Any
    ) -> spb.SharingConfiguration:
        request = spb.UpdateSharingConfigurationRequest(
            environment_id=self.environment_id,
            insight_id=insight_id,
            sharing_configuration=spb.SharingConfiguration(**fields),
        )
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
        return await self.stub.UpdateSharingConfiguration(request, metadata=self.metadata, timeout=10)

    async def refresh(self, insight_id: int) -> spb.SharingConfiguration:
        request = spb.RefreshSharingTokenRequest(environment_id=self.environment_id, insight_id=insight_id)
        return await self.stub.RefreshSharingToken(request, metadata=self.metadata, timeout=10)

    async def create_password(
        self, insight_id: int, raw: str | None = None, note: str = ""
    ) -> spb.CreateSharePasswordResponse:
        request = spb.CreateSharePasswordRequest(
            environment_id=self.environment_id, insight_id=insight_id, note=note
        )
        if raw is not None:
            request.raw_password = raw
        return await self.stub.CreateSharePassword(request, metadata=self.metadata, timeout=10)

    async def delete_password(self, insight_id: int, password_id: int) -> spb.SharingConfiguration:
        request = spb.DeleteSharePasswordRequest(
            environment_id=self.environment_id, insight_id=insight_id, password_id=password_id
        )
        return await self.stub.DeleteSharePassword(request, metadata=self.metadata, timeout=10)

    async def unlock(self, access_token: str, password: str) -> spb.UnlockSharedInsightResponse:
        # No key: unlocking is public.
        request = spb.UnlockSharedInsightRequest(access_token=access_token, password=password)
        return await self.stub.UnlockSharedInsight(request, timeout=10)

    async def read(
        self,
        *,
        access_token: str | None = None,
        share_token: str | None = None,
        refresh: int = 0,
        metadata: Metadata = (),
    ) -> ipb.Insight:
        sent = list(metadata)
        if access_token is not None:
            sent.append(("x-sharing-access-token", access_token))
        if share_token is not None:
            sent.append(("x-share-token", share_token))
        request = spb.GetSharedInsightRequest(refresh=refresh)
        return await self.stub.GetSharedInsight(request, metadata=tuple(sent), timeout=20)


@pytest.fixture
def share(server: Server, tenant: Tenant) -> Share:
    key = tenant.key("sharing_configuration:write", "insight:write", "activity_log:read")
    return Share(sgrpc.SharingServiceStub(server.channel), tenant.environment_id, bearer(key))


@pytest.fixture
def owner(api: Api, share: Share) -> Api:
    """The insight API with the same key as `share` (so activity is readable)."""
    return api.as_key(_raw(share.metadata))


def _raw(metadata: Metadata) -> str:
    return metadata[0][1].removeprefix("Bearer ")


async def _enabled(share: Share, insight_id: int, **fields: Any) -> spb.SharingConfiguration:
    mask = ["enabled", *fields]
    return await share.update(insight_id, mask, enabled=True, **fields)


async def _protected(share: Share, insight_id: int) -> tuple[spb.SharingConfiguration, int]:
    """Enabled, password-protected, with PASSWORD as its one password: (config, password id)."""
    await _enabled(share, insight_id, password_required=True)
    created = await share.create_password(insight_id, PASSWORD, note="for the board")
    return await share.get(insight_id), created.id


async def test_default_configuration_is_unsaved_and_disabled(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Shared")
    first = await share.get(insight.id)
    assert not first.enabled and not first.password_required
    assert not first.HasField("created_at"), "the default is not saved"
    assert len(first.access_token) == 30, "22 random bytes, URL-safe, as the reference"
    assert dict(first.settings) == {} and list(first.share_passwords) == []
    # Nothing was saved: the next read proposes another token.
    assert (await share.get(insight.id)).access_token != first.access_token


async def test_enable_and_disable_write_activity(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Shared")
    enabled = await _enabled(share, insight.id)
    assert enabled.enabled and enabled.HasField("created_at")
    assert (await share.get(insight.id)).access_token == enabled.access_token, "saved on first update"
    disabled = await share.update(insight.id, ["enabled"], enabled=False)
    assert not disabled.enabled and disabled.access_token == enabled.access_token
    # Writing the same value again is no flip: no entry.
    await share.update(insight.id, ["enabled"], enabled=False)
    activities = [e.activity for e in (await owner.activity(insight.id)).results]
    assert activities[:2] == ["sharing disabled", "sharing enabled"], activities
    assert activities.count("sharing disabled") == 1


async def test_settings_keep_whitelisted_booleans(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Shared")
    settings = struct_pb2.Struct()
    settings.update({"legend": True, "noHeader": False, "bogus": True, "theme": "dark"})
    config = await share.update(insight.id, ["settings"], settings=settings)
    assert dict(config.settings) == {"legend": True, "noHeader": False}
    assert dict((await share.get(insight.id)).settings) == {"legend": True, "noHeader": False}

    bad = struct_pb2.Struct()
    bad.update({"hideExtraDetails": "yes"})
    err = await expect_error(
        share.update(insight.id, ["settings"], settings=bad), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "sharing_configuration.settings.hideExtraDetails")
    assert error_info(err).reason == "INVALID_SETTINGS"

    err = await expect_error(
        share.update(insight.id, ["access_token"], access_token="mine"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask", mentions="access_token")
    assert "is not a writable field of SharingConfiguration" in (err.details() or "")


async def test_passwords_created_verified_and_deactivated(
    server: Server, owner: Api, share: Share, tenant: Tenant
) -> None:
    insight = await owner.create(name="Secret")
    await _enabled(share, insight.id)
    err = await expect_error(share.create_password(insight.id, PASSWORD), grpc.StatusCode.FAILED_PRECONDITION)
    assert "Password protection must be enabled" in (err.details() or "")

    await share.update(insight.id, ["password_required"], password_required=True)
    err = await expect_error(share.create_password(insight.id, "short"), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "raw_password", mentions="at least 8 characters")
    err = await expect_error(
        share.create_password(insight.id, PASSWORD, note="n" * 101), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "note")

    given = await share.create_password(insight.id, PASSWORD, note="for the board")
    assert given.password == PASSWORD and given.note == "for the board"
    assert given.created_by_email == tenant.email
    generated = await share.create_password(insight.id)
    assert len(generated.password) >= 16 and generated.password != PASSWORD
    same = await share.create_password(insight.id, PASSWORD, note="same text")

    config = await share.get(insight.id)
    listed = {p.id: p for p in config.share_passwords}
    assert set(listed) == {given.id, generated.id, same.id}
    assert listed[given.id].note == "for the board" and listed[given.id].is_active
    assert listed[given.id].created_by_email == tenant.email
    assert PASSWORD not in str(config), "the plaintext is shown only once"

    from storage.models import SharePassword

    with server.db.session() as session:
        hashes = {
            password_id: password_hash
            for password_id, password_hash in session.execute(
                sa.select(SharePassword.id, SharePassword.password_hash).where(
                    SharePassword.id.in_([given.id, same.id])
                )
            )
        }
    assert PASSWORD not in hashes[given.id] and hashes[given.id].startswith("scrypt$")
    assert hashes[given.id] != hashes[same.id], "equal passwords must hash differently (salt)"

    # The raw token alone no longer reads a protected insight.
    err = await expect_error(share.read(access_token=config.access_token), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "SHARING_PASSWORD_REQUIRED"
    assert err.details() == (
        "This shared insight is password-protected: unlock it with UnlockSharedInsight "
        "and send the share token as 'x-share-token' metadata"
    )
    err = await expect_error(
        share.unlock(config.access_token, "wrong password"), grpc.StatusCode.UNAUTHENTICATED
    )
    assert err.details() == "Incorrect password"
    assert error_info(err).reason == "INCORRECT_PASSWORD"

    unlocked = await share.unlock(config.access_token, generated.password)
    expires = unlocked.expires_at.ToDatetime(dt.UTC)
    assert dt.timedelta(hours=23) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=24)
    seen = await share.read(share_token=unlocked.share_token)
    assert seen.id == insight.id and seen.name == "Secret"

    # Deactivating the password revokes its sessions; the others still unlock.
    after = await share.delete_password(insight.id, generated.id)
    assert {p.id for p in after.share_passwords} == {given.id, same.id}
    err = await expect_error(share.read(share_token=unlocked.share_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARE_TOKEN_REVOKED"
    await expect_error(share.unlock(config.access_token, generated.password), grpc.StatusCode.UNAUTHENTICATED)
    await expect_error(share.delete_password(insight.id, generated.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(share.delete_password(insight.id, 987654321), grpc.StatusCode.NOT_FOUND)

    activities = [e.activity for e in (await owner.activity(insight.id)).results]
    assert "share password created" in activities and "share password deleted" in activities


async def test_shared_read_without_password_and_hide_extra_details(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Public", description="for everyone")
    config = await share.get(insight.id)
    # Not enabled yet: the default's token was never saved, so it is unknown.
    err = await expect_error(share.read(access_token=config.access_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARING_TOKEN_INVALID"
    assert err.details() == "Sharing access token is invalid."

    config = await _enabled(share, insight.id)
    seen = await share.read(access_token=config.access_token)
    assert (seen.id, seen.name, seen.description) == (insight.id, "Public", "for everyone")
    assert seen.HasField("created_by") and seen.HasField("created_at")
    assert seen.user_access_level == "viewer"
    assert not seen.HasField("last_viewed_at"), "a shared viewer is no user"

    hide = struct_pb2.Struct()
    hide.update({"hideExtraDetails": True})
    await share.update(insight.id, ["settings"], settings=hide)
    hidden = await share.read(access_token=config.access_token)
    for name in ("created_by", "last_modified_by", "created_at", "last_modified_at"):
        assert not hidden.HasField(name), name
    assert hidden.name == "Public"

    await share.update(insight.id, ["enabled"], enabled=False)
    err = await expect_error(share.read(access_token=config.access_token), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "SHARING_DISABLED"
    assert err.details() == "Sharing is disabled for this insight."
    await expect_error(share.read(access_token="not-a-token"), grpc.StatusCode.UNAUTHENTICATED)

    # A deleted insight is gone for its link too.
    await share.update(insight.id, ["enabled"], enabled=True)
    await owner.delete(insight.id)
    await expect_error(share.read(access_token=config.access_token), grpc.StatusCode.NOT_FOUND)


async def test_a_shared_link_never_shows_a_list_of_persons(owner: Api, share: Share) -> None:
    # A path drill-down lists persons with their properties: the owner may save it, but a link
    # to it answers PERMISSION_DENIED instead of handing those persons to whoever holds the link.
    drill = json_format.ParseDict(
        {"insight_actors_query": {"source": {"paths_query": {"paths_filter": {"path_end_key": "1_/home"}}}}},
        qpb.QueryNode(),
    )
    insight = await owner.create(name="Who reached home", query=drill)
    config = await _enabled(share, insight.id)
    err = await expect_error(share.read(access_token=config.access_token), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "PERSONS_NOT_SHARED"


EXTRA_DETAILS = ("created_by", "last_modified_by", "created_at", "last_modified_at", "updated_at")


@pytest.mark.parametrize("credential", ["access_token", "share_token"])
@pytest.mark.parametrize("hide", [False, True], ids=["details-shown", "details-hidden"])
async def test_shared_viewers_get_no_sql_and_no_creator_identity(
    server: Server, owner: Api, share: Share, tenant: Tenant, credential: str, hide: bool
) -> None:
    insight = await owner.create(name="Viewed", query=trends_viz("viewed-event"))
    await owner.update(insight.id, ["name"], name="Viewed again")  # sets last_modified_by
    # An alert on it: the owner sees it listed on the insight, a viewer must not.
    alert = apb.Alert(
        insight=insight.id,
        name="internal alert",
        threshold=apb.Threshold(
            configuration=apb.InsightThreshold(
                type=apb.INSIGHT_THRESHOLD_TYPE_ABSOLUTE, bounds=apb.InsightsThresholdBounds(upper=1)
            )
        ),
    )
    await agrpc.AlertsServiceStub(server.channel).CreateAlert(
        apb.CreateAlertRequest(environment_id=tenant.environment_id, alert=alert),
        metadata=bearer(tenant.key("alert:write")),
        timeout=10,
    )
    settings = struct_pb2.Struct()
    settings.update({"hideExtraDetails": hide})
    protected = credential == "share_token"
    config = await _enabled(share, insight.id, settings=settings, password_required=protected)
    if protected:
        await share.create_password(insight.id, PASSWORD)
        sent = {"share_token": (await share.unlock(config.access_token, PASSWORD)).share_token}
    else:
        sent = {"access_token": config.access_token}
    with tenant.db.session() as session:
        creator = session.execute(
            sa.text("SELECT email, uuid, distinct_id FROM users WHERE id = :id"), {"id": tenant.user_id}
        ).one()
    # An async read of the uncached insight shows a run's status; a blocking read shows the result.
    pending = await share.read(**sent, refresh=common_pb2.REFRESH_MODE_ASYNC)
    assert pending.HasField("query_status")
    seen = await share.read(**sent, refresh=common_pb2.REFRESH_MODE_BLOCKING)
    assert seen.HasField("result") and seen.name == "Viewed again"
    # The owner, with a key, does get the engine's query text: the viewer's answer is what differs.
    request = ipb.GetInsightRequest(
        environment_id=tenant.environment_id, id=insight.id, refresh=common_pb2.REFRESH_MODE_BLOCKING
    )
    as_owner = await owner.stub.GetInsight(request, metadata=owner.metadata, timeout=20)
    assert as_owner.hogql and [a.name for a in as_owner.alerts] == ["internal alert"]

    for answer in (pending, seen):
        assert answer.hogql == "" and not answer.alerts and not answer.HasField("last_viewed_at")
        if answer.HasField("query_status"):
            status = answer.query_status
            assert (status.id, status.task_id, status.team_id, list(status.labels)) == ("", "", 0, [])
            for name in ("query_progress", "start_time", "pickup_time", "end_time", "expiration_time"):
                assert not status.HasField(name), name
        text = json_format.MessageToJson(answer)
        assert "select" not in text.lower(), "no SQL reaches a shared viewer"
        for secret in creator:
            assert secret not in text, "the creator's email, uuid and distinct_id stay private"
        if hide:
            for name in EXTRA_DETAILS:
                assert not answer.HasField(name), name
        else:
            for name in ("created_by", "last_modified_by"):
                user = getattr(answer, name)
                assert (user.first_name, user.last_name) == ("Owner", "Tester"), name
                assert (user.id, user.uuid, user.distinct_id, user.email) == (0, "", "", ""), name
                assert not user.is_email_verified and not user.role_at_organization
            assert answer.HasField("created_at") and answer.HasField("last_modified_at")


async def test_shared_viewers_cannot_force_engine_load(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Trend", query=trends_viz("shared-event"))
    config = await _enabled(share, insight.id)
    # No cache yet: force_blocking becomes blocking, which computes once.
    first = await share.read(access_token=config.access_token, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING)
    assert first.HasField("result") and not first.is_cached
    # A fresh cached result: force_blocking is downgraded to blocking, which answers from the cache.
    again = await share.read(access_token=config.access_token, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING)
    assert again.is_cached and again.last_refresh == first.last_refresh


async def test_rotation_keeps_the_old_token_for_the_grace_period(
    owner: Api, share: Share, clock: Clock
) -> None:
    insight = await owner.create(name="Rotated")
    old, password_id = await _protected(share, insight.id)
    old_session = await share.unlock(old.access_token, PASSWORD)

    new = await share.refresh(insight.id)
    assert new.access_token != old.access_token
    assert new.enabled and new.password_required
    assert [p.note for p in new.share_passwords] == ["for the board"], "passwords move to the new token"
    assert (await share.get(insight.id)).access_token == new.access_token

    # Within the grace period both tokens unlock, with the same password.
    clock.advance(299)
    await share.unlock(old.access_token, PASSWORD)
    new_session = await share.unlock(new.access_token, PASSWORD)
    await share.read(share_token=old_session.share_token)

    clock.advance(2)
    err = await expect_error(share.unlock(old.access_token, PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARING_TOKEN_EXPIRED"
    err = await expect_error(share.read(share_token=old_session.share_token), grpc.StatusCode.UNAUTHENTICATED)
    assert (await share.read(share_token=new_session.share_token)).id == insight.id

    # A share session lasts 24 hours.
    clock.advance(24 * 3600)
    await expect_error(share.read(share_token=new_session.share_token), grpc.StatusCode.UNAUTHENTICATED)
    activities = [e.activity for e in (await owner.activity(insight.id)).results]
    assert "access token refreshed" in activities
    assert password_id not in {p.id for p in new.share_passwords}, "copies, not the old rows"


async def test_a_token_reaches_only_its_insight(
    server: Server, owner: Api, share: Share, stub: Any, tenant: Tenant
) -> None:
    a = await owner.create(name="A")
    b = await owner.create(name="B")
    token_a = (await _enabled(share, a.id)).access_token
    await _enabled(share, b.id)
    assert (await share.read(access_token=token_a)).id == a.id

    sharing_header = (("x-sharing-access-token", token_a),)
    for call in (
        stub.ListInsights(
            ipb.ListInsightsRequest(environment_id=tenant.environment_id), metadata=sharing_header
        ),
        stub.GetInsight(
            ipb.GetInsightRequest(environment_id=tenant.environment_id, id=b.id), metadata=sharing_header
        ),
        share.stub.GetSharingConfiguration(
            spb.GetSharingConfigurationRequest(environment_id=tenant.environment_id, insight_id=a.id),
            metadata=sharing_header,
        ),
        share.stub.RefreshSharingToken(
            spb.RefreshSharingTokenRequest(environment_id=tenant.environment_id, insight_id=a.id),
            metadata=(("x-share-token", "anything"),),
        ),
    ):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_info(err).reason == "SHARING_ACCESS_NOT_ALLOWED"
        assert (err.details() or "").endswith(
            ": it only reads the shared insight (GetSharedInsight)"
        ), err.details()


async def test_failed_unlocks_are_limited_and_reset_on_success(
    owner: Api, share: Share, clock: Clock
) -> None:
    insight = await owner.create(name="Guarded")
    config, _ = await _protected(share, insight.id)
    await share.unlock(config.access_token, PASSWORD)  # a success clears this peer's earlier failures

    for _ in range(10):
        await expect_error(
            share.unlock(config.access_token, "wrong password"), grpc.StatusCode.UNAUTHENTICATED
        )
    err = await expect_error(share.unlock(config.access_token, PASSWORD), grpc.StatusCode.RESOURCE_EXHAUSTED)
    retry = [d for d in rich_status(err).details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert retry, "RESOURCE_EXHAUSTED carries RetryInfo"
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 60 < info.retry_delay.seconds <= 300
    # The peer is limited too, whatever token it tries.
    await expect_error(share.unlock("another-token", PASSWORD), grpc.StatusCode.RESOURCE_EXHAUSTED)

    clock.advance(301)
    await share.unlock(config.access_token, PASSWORD)
    # The success reset the count: nine more failures are still allowed before the limit.
    for _ in range(9):
        await expect_error(
            share.unlock(config.access_token, "wrong password"), grpc.StatusCode.UNAUTHENTICATED
        )
    await share.unlock(config.access_token, PASSWORD)


# method -> (required scope, request factory)
RPCS: dict[str, tuple[str, Any]] = {
    "GetSharingConfiguration": (
        "sharing_configuration:read",
        lambda env, i: spb.GetSharingConfigurationRequest(environment_id=env, insight_id=i),
    ),
    "UpdateSharingConfiguration": (
        "sharing_configuration:write",
        lambda env, i: spb.UpdateSharingConfigurationRequest(environment_id=env, insight_id=i),
    ),
    "RefreshSharingToken": (
        "sharing_configuration:write",
        lambda env, i: spb.RefreshSharingTokenRequest(environment_id=env, insight_id=i),
    ),
    "CreateSharePassword": (
        "sharing_configuration:write",
        lambda env, i: spb.CreateSharePasswordRequest(environment_id=env, insight_id=i),
    ),
    "DeleteSharePassword": (
        "sharing_configuration:write",
        lambda env, i: spb.DeleteSharePasswordRequest(environment_id=env, insight_id=i, password_id=1),
    ),
}


@pytest.mark.parametrize("method", sorted(RPCS))
async def test_every_rpc_needs_its_scope(method: str, owner: Api, share: Share, tenant: Tenant) -> None:
    insight = await owner.create(name="Scoped")
    scope, factory = RPCS[method]
    weaker = "insight:write" if scope.endswith(":read") else "sharing_configuration:read"
    metadata = bearer(tenant.key(weaker))
    err = await expect_error(
        getattr(share.stub, method)(factory(tenant.environment_id, insight.id), metadata=metadata),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert scope in (err.details() or "") and error_info(err).reason == "MISSING_SCOPE"


async def test_writes_need_a_reachable_insight(owner: Api, share: Share, make_tenant: Any) -> None:
    other = make_tenant()
    foreign = await owner.as_key(other.key("insight:write"), other.environment_id).create(name="Theirs")
    err = await expect_error(share.get(foreign.id), grpc.StatusCode.NOT_FOUND)
    info = error_info(err)
    metadata = dict(info.metadata)
    assert metadata.pop("request_id")  # every error carries its call's id
    assert (info.reason, metadata) == ("INSIGHT_NOT_FOUND", {"insight": str(foreign.id)})
    await expect_error(share.update(foreign.id, ["enabled"], enabled=True), grpc.StatusCode.NOT_FOUND)
    deleted = await owner.create(name="Gone")
    await owner.delete(deleted.id)
    await expect_error(share.refresh(deleted.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(share.create_password(deleted.id, PASSWORD), grpc.StatusCode.NOT_FOUND)
    elsewhere = Share(share.stub, other.environment_id, share.metadata)
    await expect_error(elsewhere.get(foreign.id), grpc.StatusCode.PERMISSION_DENIED)


async def test_shared_read_needs_a_sharing_credential(share: Share, tenant: Tenant) -> None:
    err = await expect_error(share.read(), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "MISSING_SHARING_CREDENTIAL"
    assert err.details() == (
        "/insights.v1.SharingService/GetSharedInsight needs a sharing credential: send "
        "'x-sharing-access-token' (the link's token) or 'x-share-token' (from UnlockSharedInsight) metadata"
    )
    # An API key does not stand for a shared insight either.
    err = await expect_error(share.read(metadata=bearer(tenant.key("*"))), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "MISSING_SHARING_CREDENTIAL"


# ------------------------------------------------------------------ the audit trail, in detail


def _changes(entry: Any) -> list[tuple[str, str, str, Any, Any]]:
    """An activity entry's changes as (type, action, field, before, after), JSON values as Python."""
    return [
        (
            change.type,
            change.action,
            change.field,
            json_format.MessageToDict(change.before),
            json_format.MessageToDict(change.after),
        )
        for change in entry.detail.changes
    ]


async def test_each_sharing_change_is_logged_by_whom_when_and_what(
    owner: Api, share: Share, tenant: Tenant, clock: Clock
) -> None:
    insight = await owner.create(name="Audited")
    clock.set(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))
    await _enabled(share, insight.id)
    clock.advance(60)
    legend = struct_pb2.Struct()
    legend.update({"legend": True})
    await share.update(insight.id, ["settings", "password_required"], settings=legend, password_required=True)
    clock.advance(60)
    created = await share.create_password(insight.id, PASSWORD, note="for the board")
    clock.advance(60)
    await share.delete_password(insight.id, created.id)
    clock.advance(60)
    await share.refresh(insight.id)
    clock.advance(60)
    await share.update(insight.id, ["enabled"], enabled=False)

    entries = [e for e in (await owner.activity(insight.id)).results if e.activity != "created"]
    entries.reverse()  # oldest first
    assert [e.activity for e in entries] == [
        "sharing enabled",
        "sharing updated",
        "share password created",
        "share password deleted",
        "access token refreshed",
        "sharing disabled",
    ]
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    for minutes, entry in enumerate(entries):
        assert entry.created_at.ToDatetime(dt.UTC) == start + dt.timedelta(minutes=minutes), entry.activity
        assert entry.user.email == tenant.email and not entry.is_system, entry.activity
        assert (entry.scope, entry.item_id, entry.detail.name) == ("Insight", str(insight.id), "Audited")
    enabled, updated, password_created, password_deleted, refreshed, disabled = entries
    config = "SharingConfiguration"
    assert _changes(enabled) == [(config, "changed", "enabled", False, True)]
    assert _changes(updated) == [
        (config, "changed", "password_required", False, True),
        (config, "changed", "settings", None, {"legend": True}),
    ]
    note = {"id": created.id, "note": "for the board"}
    assert _changes(password_created) == [(config, "changed", "share_password", None, note)]
    assert _changes(password_deleted) == [(config, "changed", "share_password", note, None)]
    assert _changes(refreshed) == []
    assert _changes(disabled) == [(config, "changed", "enabled", True, False)]


# ------------------------------------------------------------------------ rotation, in detail


async def test_rotation_carries_the_configuration_and_its_passwords_over(
    server: Server, owner: Api, share: Share, tenant: Tenant, clock: Clock
) -> None:
    insight = await owner.create(name="Rotated")
    settings = struct_pb2.Struct()
    settings.update({"hideExtraDetails": True, "legend": False})
    shared_at = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    clock.set(shared_at)
    await _enabled(share, insight.id, settings=settings, password_required=True)
    given = await share.create_password(insight.id, PASSWORD, note="for the board")
    old = await share.get(insight.id)
    assert old.created_at.ToDatetime(dt.UTC) == shared_at

    clock.advance(3600)
    new = await share.refresh(insight.id)
    assert new.access_token != old.access_token
    assert new.enabled and new.password_required
    assert dict(new.settings) == {"hideExtraDetails": True, "legend": False}
    assert new.created_at.ToDatetime(dt.UTC) == shared_at + dt.timedelta(hours=1)
    [moved] = new.share_passwords
    assert moved.id != given.id and moved.is_active
    assert (moved.note, moved.created_by_email) == ("for the board", tenant.email)
    assert moved.created_at.ToDatetime(dt.UTC) == shared_at, "the password's own age, not the rotation's"

    from storage.models import SharingConfiguration

    with server.db.session() as session:
        creators = {
            token: creator
            for token, creator in session.execute(
                sa.select(SharingConfiguration.access_token, SharingConfiguration.created_by_id).where(
                    SharingConfiguration.access_token.in_([old.access_token, new.access_token])
                )
            )
        }
    # Who first shared the insight, and who rotated its link, are both recorded.
    assert creators == {old.access_token: tenant.user_id, new.access_token: tenant.user_id}


async def test_rotating_before_any_configuration_makes_a_disabled_one(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Never shared")
    rotated = await share.refresh(insight.id)
    assert not rotated.enabled and not rotated.password_required
    assert rotated.HasField("created_at") and dict(rotated.settings) == {}
    assert (await share.get(insight.id)).access_token == rotated.access_token, "saved"
    err = await expect_error(share.read(access_token=rotated.access_token), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "SHARING_DISABLED"
    # Settings never set stay unset through a rotation.
    await _enabled(share, insight.id)
    again = await share.refresh(insight.id)
    assert again.enabled and dict(again.settings) == {}


async def test_rotation_expires_only_this_insights_live_link(owner: Api, share: Share, clock: Clock) -> None:
    rotated = await owner.create(name="Rotated")
    bystander = await owner.create(name="Bystander")
    first = await _enabled(share, rotated.id)
    kept = await _enabled(share, bystander.id)

    await share.refresh(rotated.id)
    clock.advance(301)
    assert (await share.read(access_token=kept.access_token)).id == bystander.id, "another insight's link"
    err = await expect_error(share.read(access_token=first.access_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARING_TOKEN_EXPIRED"
    assert err.details() == "Sharing access token has expired: the link was rotated; use the new link"

    # A second rotation leaves the first token expired: its grace period is not granted again.
    second = await share.get(rotated.id)
    await share.refresh(rotated.id)
    err = await expect_error(share.read(access_token=first.access_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARING_TOKEN_EXPIRED"
    assert (await share.read(access_token=second.access_token)).id == rotated.id, "within its own grace"


# ------------------------------------------------------------------------ passwords, in detail


async def test_deleting_a_password_needs_one_of_this_links_active_passwords(
    owner: Api, share: Share
) -> None:
    mine = await owner.create(name="Mine")
    other = await owner.create(name="Other")
    never_shared = await owner.create(name="Never shared")
    await _protected(share, mine.id)
    other_config, other_password = await _protected(share, other.id)

    for insight_id, password_id in ((mine.id, other_password), (mine.id, 987654321), (never_shared.id, 1)):
        err = await expect_error(share.delete_password(insight_id, password_id), grpc.StatusCode.NOT_FOUND)
        info = error_info(err)
        assert (info.reason, info.metadata["password_id"]) == ("SHARE_PASSWORD_NOT_FOUND", str(password_id))
        assert err.details() == f"Password not found: {password_id}"
    # The other link's password was not touched by the attempt through this insight.
    assert [p.id for p in (await share.get(other.id)).share_passwords] == [other_password]
    assert (await share.unlock(other_config.access_token, PASSWORD)).share_token


async def test_password_rules_at_their_edges(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Edges")
    await _enabled(share, insight.id)
    err = await expect_error(share.create_password(insight.id, PASSWORD), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "PASSWORD_PROTECTION_DISABLED"
    assert err.details() == (
        "Password protection must be enabled before creating passwords "
        "(set password_required with UpdateSharingConfiguration)"
    )
    await share.update(insight.id, ["password_required"], password_required=True)

    err = await expect_error(share.create_password(insight.id, "seven77"), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_info(err).reason == "PASSWORD_TOO_SHORT"
    eight = await share.create_password(insight.id, "eight888", note="n" * 100)
    assert (eight.password, eight.note) == ("eight888", "n" * 100), "8 characters and a 100-character note"
    # A blank password asks for a generated one: 16 random bytes, URL-safe.
    for blank in (None, "", "        "):
        generated = await share.create_password(insight.id, blank)
        assert len(generated.password) == 22 and generated.password.strip() == generated.password, blank
    listed = [p.id for p in (await share.get(insight.id)).share_passwords]
    assert listed == sorted(listed) and len(listed) == 4, "listed in the order they were made"


async def test_a_share_session_lasts_exactly_24_hours(
    server: Server, owner: Api, share: Share, clock: Clock
) -> None:
    insight = await owner.create(name="Timed")
    config, _ = await _protected(share, insight.id)
    unlocked_at = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    clock.set(unlocked_at)
    session = await share.unlock(config.access_token, PASSWORD)
    assert session.expires_at.ToDatetime(dt.UTC) == unlocked_at + dt.timedelta(hours=24)
    assert len(session.share_token) == 43, "32 random bytes, URL-safe"
    from storage.models import ShareSession

    with server.db.session() as rows:
        opened = rows.scalars(sa.select(ShareSession.created_at).order_by(ShareSession.id.desc())).first()
    assert opened is not None and opened.replace(tzinfo=dt.UTC) == unlocked_at, "the session's audit time"
    clock.advance(24 * 3600 - 1)
    assert (await share.read(share_token=session.share_token)).id == insight.id
    clock.advance(1)
    err = await expect_error(share.read(share_token=session.share_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARE_TOKEN_INVALID"
    assert err.details() == "Share token is invalid or has expired: unlock the insight again"


async def test_a_session_opened_on_a_rotated_link_ends_with_it(owner: Api, share: Share, clock: Clock) -> None:
    insight = await owner.create(name="Rotated")
    old, _ = await _protected(share, insight.id)
    rotated_at = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    clock.set(rotated_at)
    await share.refresh(insight.id)
    clock.advance(100)
    session = await share.unlock(old.access_token, PASSWORD)
    assert session.expires_at.ToDatetime(dt.UTC) == rotated_at + dt.timedelta(seconds=300)
    clock.advance(199)
    assert (await share.read(share_token=session.share_token)).id == insight.id
    clock.advance(1)  # the old link's last instant has passed, and the session's with it
    err = await expect_error(share.read(share_token=session.share_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARE_TOKEN_INVALID"
    err = await expect_error(share.unlock(old.access_token, PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARING_TOKEN_EXPIRED"


async def test_a_session_belongs_to_the_password_that_opened_it(owner: Api, share: Share) -> None:
    insight = await owner.create(name="Two passwords")
    config, first = await _protected(share, insight.id)
    second = await share.create_password(insight.id, "another password")
    session = await share.unlock(config.access_token, PASSWORD)

    await share.delete_password(insight.id, second.id)
    assert (await share.read(share_token=session.share_token)).id == insight.id, "another password went"
    await share.delete_password(insight.id, first)
    err = await expect_error(share.read(share_token=session.share_token), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "SHARE_TOKEN_REVOKED"
    assert err.details() == "Share token was revoked: its password was removed"


async def test_a_shared_viewer_forces_a_recalculation_only_past_the_intervals_threshold(
    owner: Api, share: Share, clock: Clock
) -> None:
    query = trends_viz("hourly-shared-event")
    query.insight_viz_node.source.trends_query.interval = qpb.INTERVAL_TYPE_HOUR
    insight = await owner.create(name="Hourly", query=query)
    config = await _enabled(share, insight.id)
    force = common_pb2.REFRESH_MODE_FORCE_BLOCKING
    first = await share.read(access_token=config.access_token, refresh=force)
    # An hour interval goes stale after an hour (a day's would after six).
    clock.set(first.last_refresh.ToDatetime(dt.UTC) + dt.timedelta(hours=1))
    fresh = await share.read(access_token=config.access_token, refresh=force)
    assert fresh.is_cached and fresh.last_refresh == first.last_refresh
    clock.advance(1)
    forced = await share.read(access_token=config.access_token, refresh=force)
    assert not forced.is_cached, "an hour-interval result older than an hour is recomputed"


async def test_a_password_without_a_recorded_creator_lists_with_an_empty_email(
    server: Server, owner: Api, share: Share
) -> None:
    insight = await owner.create(name="Imported")
    _, password_id = await _protected(share, insight.id)
    from storage.models import SharePassword

    # The creator column is nullable (rows this service did not write, such as imported ones):
    # such a password is still listed, with an empty email rather than an error or a placeholder.
    with server.db.session() as session:
        session.execute(
            sa.update(SharePassword).where(SharePassword.id == password_id).values(created_by_id=None)
        )
    [listed] = (await share.get(insight.id)).share_passwords
    assert (listed.id, listed.note, listed.created_by_email) == (password_id, "for the board", "")


async def test_of_two_live_configurations_the_newest_is_shown_changed_and_rotated(
    server: Server, owner: Api, share: Share, tenant: Tenant
) -> None:
    # Two first writes that race (each finds no configuration) both save one. The second live
    # configuration written here stands for that race's loser: editors see and change the newest,
    # and a rotation carries the newest over.
    insight = await owner.create(name="Raced")
    older = await _enabled(share, insight.id)
    from storage.models import SharingConfiguration

    with server.db.session() as session:
        session.add(
            SharingConfiguration(
                environment_id=tenant.environment_id,
                insight_id=insight.id,
                created_by_id=tenant.user_id,
                access_token="raced-newer-link-token",
                enabled=True,
                settings={"legend": True},
                password_required=False,
            )
        )
    shown = await share.get(insight.id)
    assert (shown.access_token, dict(shown.settings)) == ("raced-newer-link-token", {"legend": True})
    changed = await share.update(insight.id, ["password_required"], password_required=True)
    assert changed.access_token == "raced-newer-link-token" and changed.password_required
    assert (await share.read(access_token=older.access_token)).id == insight.id, "both links are live"

    rotated = await share.refresh(insight.id)
    assert dict(rotated.settings) == {"legend": True} and rotated.password_required, "the newest's"


async def test_a_run_a_shared_viewer_starts_belongs_to_the_insight(
    server: Server, owner: Api, share: Share, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner's GetQueryStatus of a computation a shared link caused names the insight, as for
    # one the owner caused. The runs' clock stands still, so the finished run stays readable.
    from generated.insights.v1 import query_service_pb2 as qs
    from generated.insights.v1 import query_service_pb2_grpc as qs_grpc

    frozen = dt.datetime.now(dt.UTC)
    monkeypatch.setattr(server.app.execution.runs, "clock", lambda: frozen)
    insight = await owner.create(name="Viewed", query=trends_viz("viewer-started-event"))
    config = await _enabled(share, insight.id)
    seen = await share.read(access_token=config.access_token, refresh=common_pb2.REFRESH_MODE_BLOCKING)
    assert seen.HasField("result") and not seen.is_cached

    queries = qs_grpc.QueryServiceStub(server.channel)
    key = bearer(tenant.key("query:read"))
    cached = await queries.RunQuery(
        qs.RunQueryRequest(
            environment_id=tenant.environment_id, query=insight.query, refresh=common_pb2.REFRESH_MODE_FORCE_CACHE
        ),
        metadata=key,
        timeout=10,
    )
    assert cached.is_cached and cached.cache_key
    status = await queries.GetQueryStatus(
        qs.GetQueryStatusRequest(environment_id=tenant.environment_id, query_id=cached.cache_key),
        metadata=key,
        timeout=10,
    )
    assert status.complete and status.insight_id == insight.id
