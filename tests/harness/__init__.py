"""What the tests share: Redis servers and key names, settings, the provider and simulator on
loopback ports, a scripted relying party, the vendor's side, and an in-process fake vendor.

- ``redis``: ``RedisProcess`` (a real redis-server) and the store's own key names.
- ``settings``: the suite's base settings, ``merge``/``UNSET``, client entries.
- ``servers``: ``Stack`` (provider + simulator on loopback), ``StackPool``, ``running_stack``.
- ``rp``: ``Flow`` and ``authorize``, the one relying-party driver; ``redeem_code``.
- ``vendor``: webhook bodies and posts, and the simulator's partner API.
- ``fake_vendor``: a small iDenfy API behind the vendor fetch, for the in-process tier.

The fixtures built on these are in ``tests/conftest.py``; ``tests/README.md`` explains the tiers.
"""
