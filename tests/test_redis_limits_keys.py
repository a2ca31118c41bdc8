"""Whose limits a `PortalKey` names: the portal, a digest of the credential, never a secret."""

from __future__ import annotations

import pytest

from bitrix_batch import OAuth
from bitrix_batch._auth import Webhook
from tests.redis_support import needs_coredis

pytestmark = needs_coredis

HOOK = "https://Portal.Bitrix24.com/rest/7/s3cr3tc0de0000/"


def test_a_webhook_key_holds_no_secret() -> None:
    from bitrix_batch.redis import PortalKey

    key = PortalKey.for_webhook(HOOK)
    assert key.portal == "portal.bitrix24.com"
    assert key.rate_key == "bitrix_batch:rate:portal.bitrix24.com"
    assert key.holds_key.startswith("bitrix_batch:holds:portal.bitrix24.com:")
    for text in (key.rate_key, key.holds_key, repr(key)):
        assert "s3cr3tc0de0000" not in text


def test_the_bucket_is_the_portals_and_the_budget_the_credentials() -> None:
    from bitrix_batch.redis import PortalKey

    one = PortalKey.of(HOOK)
    other_code = PortalKey.of("https://portal.bitrix24.com/rest/7/anothercode/")
    other_user = PortalKey.of("https://portal.bitrix24.com/rest/8/s3cr3tc0de0000/")
    assert one.rate_key == other_code.rate_key == other_user.rate_key
    assert len({one.holds_key, other_code.holds_key, other_user.holds_key}) == 3
    assert PortalKey.of(Webhook.parse(HOOK)) == one
    assert PortalKey.of("https://other.bitrix24.com/rest/7/s3cr3tc0de0000/").rate_key != (
        one.rate_key
    )


def test_an_application_is_keyed_by_its_client_id() -> None:
    from bitrix_batch.redis import PortalKey

    creds = OAuth("https://portal.bitrix24.com/rest/", access_token="tok-123")
    with pytest.raises(ValueError, match="application="):
        PortalKey.of(creds)
    key = PortalKey.of(creds, application="app.1")
    assert key == PortalKey.for_application("https://portal.bitrix24.com/rest/", "app.1")
    assert key.holds_key != PortalKey.of(creds, application="app.2").holds_key
    assert key.rate_key == PortalKey.of(HOOK).rate_key  # one bucket per portal
    built_in = OAuth(
        "https://portal.bitrix24.com/rest/",
        access_token="tok-123",
        refresh_token="ref-456",
        client_id="app.1",
        client_secret="shh",
    )
    assert PortalKey.of(built_in) == key
    assert "tok-123" not in key.holds_key


def test_egress_and_prefix_keep_buckets_apart() -> None:
    from bitrix_batch.redis import PortalKey

    a = PortalKey.of(HOOK, egress="10.0.0.1")
    b = PortalKey.of(HOOK, egress="10.0.0.2")
    assert a.rate_key != b.rate_key
    assert a.holds_key == b.holds_key  # the budget does not depend on the address
    assert PortalKey.of(HOOK, prefix="staging").rate_key.startswith("staging:rate:")


def test_bad_inputs() -> None:
    from bitrix_batch.redis import PortalKey

    with pytest.raises(ValueError, match="webhook URL"):
        PortalKey.for_webhook("https://portal.bitrix24.com/rest/")
    with pytest.raises(ValueError, match="client id"):
        PortalKey.for_application("https://portal.bitrix24.com/rest/", "")


def test_international_names_stay_apart() -> None:
    from bitrix_batch.redis import PortalKey

    mine = PortalKey.for_webhook("https://мой.рф/rest/1/code/")
    ours = PortalKey.for_webhook("https://наш.рф/rest/1/code/")
    assert mine.rate_key != ours.rate_key
    assert mine.portal == "мой.рф".encode("idna").decode()
    assert mine.rate_key.isascii()


def test_the_default_port_is_the_same_portal() -> None:
    from bitrix_batch.redis import PortalKey

    plain = PortalKey.of(HOOK)
    assert PortalKey.of("https://portal.bitrix24.com:443/rest/7/s3cr3tc0de0000/") == plain
    assert PortalKey.of("http://box.example:80/rest/1/c/").portal == "box.example"
    assert PortalKey.of("https://box.example:8443/rest/1/c/").portal == "box.example:8443"
    assert PortalKey.of("http://box.example:443/rest/1/c/").portal == "box.example:443"


def test_portals_under_a_path_stay_apart() -> None:
    from bitrix_batch.redis import PortalKey

    root = PortalKey.for_webhook("https://box.example/rest/1/c/")
    crm = PortalKey.for_webhook("https://box.example/crm/rest/1/c/")
    a_b = PortalKey.for_webhook("https://box.example/a_b/rest/1/c/")
    a_slash_b = PortalKey.for_webhook("https://box.example/a/b/rest/1/c/")
    keys = {k.rate_key for k in (root, crm, a_b, a_slash_b)}
    assert len(keys) == 4
    assert root.rate_key == "bitrix_batch:rate:box.example"
    app = PortalKey.for_application("https://box.example/crm/rest/", "app.1")
    assert app.rate_key == crm.rate_key
    assert PortalKey.for_application("https://box.example", "app.1").rate_key == root.rate_key


def test_unsafe_egress_names_are_digested_not_merged() -> None:
    from bitrix_batch.redis import PortalKey

    one = PortalKey.of(HOOK, egress="nat/1")
    two = PortalKey.of(HOOK, egress="nat_1")
    assert one.rate_key != two.rate_key
    assert "/" not in one.rate_key
    assert two.rate_key.endswith(":nat_1")  # safe names are kept as they are
