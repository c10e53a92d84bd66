"""Following a rotation of the generated signing keys in a running instance: what the
wake-up channel carries, how long a replaced key stays published, and the split check that
must tell a rotation from a Redis data loss. Against a real redis-server."""

from __future__ import annotations

import asyncio
import time

from idenfy_stepup.boot.key_rotation import KeyFollower, publish_window, rotate_keys
from idenfy_stepup.boot.runtime import load_secrets
from idenfy_stepup.settings import KeysSettings, Settings, parse_settings
from idenfy_stepup.store import KEYS_CHANGED, Notifier, Store, open_backend

from .harness.settings import TEST_ENCRYPTION_KEY, base_settings, merge


def _settings(redis_url: str) -> Settings:
    raw = merge(base_settings(1, 2, redis_url), {"keys": {"encryption_key": TEST_ENCRYPTION_KEY}})
    return parse_settings(raw)


def test_the_publish_window_covers_an_id_token_and_its_use_as_a_hint() -> None:
    assert publish_window(KeysSettings()) == 300 + 600 + 15
    longer_access = KeysSettings(access_token_lifetime=3600, id_token_hint_tolerance=0)
    assert publish_window(longer_access) == 3600 + 15


async def test_the_keys_changed_message_reaches_its_callback_and_wakes_no_challenge(
    redis_url: str,
) -> None:
    settings = _settings(redis_url)
    store = Store(open_backend(settings.redis), "stepup")
    notifier = Notifier(store.backend, store.channel)
    heard = asyncio.Event()
    notifier.on_control(KEYS_CHANGED, heard.set)
    await notifier.start()
    try:
        await asyncio.wait_for(notifier.connected.wait(), 10)
        async with notifier.waiting(KEYS_CHANGED) as waiter:
            waiter.clear()  # the subscription's own start woke every waiter
            await store.backend.execute("PUBLISH", store.channel, KEYS_CHANGED)
            await asyncio.wait_for(heard.wait(), 10)
            assert not waiter.published
    finally:
        await notifier.stop()
        await store.aclose()


async def test_a_rotation_is_adopted_but_a_redis_data_loss_is_still_a_split(
    redis_url: str,
) -> None:
    settings = _settings(redis_url)
    store = Store(open_backend(settings.redis), "stepup")
    try:
        version = await store.keyring_version()
        keys, _, shared = await load_secrets(settings, store)
        shared.rotation = KeyFollower(settings.keys, shared, keys, version).follow
        old = keys.signing_key("RS256").kid
        new = {k.alg: k.kid for k in await rotate_keys(settings, store, int(time.time()))}

        assert await shared.check() == []
        assert keys.signing_key("RS256").kid == new["RS256"]
        assert {old, new["RS256"], new["ES256"]} <= {k.kid for k in keys.published}

        # Redis loses its data, and another instance generates keys of its own.
        await store.backend.execute("FLUSHALL")
        other = Store(open_backend(settings.redis), "stepup")
        try:
            await load_secrets(settings, other)
        finally:
            await other.aclose()
        split = await shared.check()
        assert "jwk:RS256" in split and "jwk:ES256" in split
        assert keys.signing_key("RS256").kid == new["RS256"]
    finally:
        await store.aclose()
