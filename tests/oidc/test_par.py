"""Pushed authorization requests (RFC 9126): ``POST /par``, then ``/authorize`` by reference.

The client authenticates at /par as at /token (each of the three methods, the same replay check
and failure throttle), the pushed request is validated there without Redis or the vendor, and
the browser's ``/authorize?client_id=…&request_uri=…`` takes everything from it, once. Expiry is
shown without waiting: the pushed request's TTL is checked against the setting, then the key is
made to expire now with ``PEXPIRE``.

Every push comes from an address of its own (``X-Forwarded-For`` from the trusted loopback
proxy), so failures counted by one test never throttle another.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from ..harness.redis import RedisProcess, challenge_key, pushed_key
from ..harness.rp import Flow, decode_id_token, pkce, request_object, request_params
from ..harness.servers import TLS, Stack, StackPool, running_stack
from ..harness.settings import REDIRECT_URI, client_entry, client_secret
from ..harness.vendor import vendor_sessions

pytestmark = pytest.mark.asyncio(loop_scope="module")

HINTS = ["login_hint"]
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
URN = "urn:ietf:params:oauth:request_uri:"
LIMIT = {"count": 3, "seconds": 60}
ACR = "urn:idenfy:stepup:face"
INVALID = "invalid_request"
# A transfer the person approves (RFC 9396), pushed rather than sent through the browser.
NOTE = {
    "schema": {"type": "object", "properties": {"payee": {"type": "string"}}},
    "display": "Pay {{ payee }}",
}
SETTINGS: dict[str, Any] = {
    "server": {"trusted_proxies": ["127.0.0.1/32"]},
    "authorization_details": {"types": {"transfer": NOTE}},
    "clients": [
        client_entry(
            "shop",
            subject_hints=["login_hint", "request_object"],
            authorization_details_types=["transfer"],
        ),
        client_entry("post", subject_hints=HINTS, token_endpoint_auth_method="client_secret_post"),
        client_entry("guessed", subject_hints=HINTS),
        client_entry("pushes", subject_hints=HINTS, require_pushed_authorization_requests=True),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": HINTS,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}
# The failure throttle at its test's own strength (the suite's counters, shared through Redis
# by every module, stay far from it on the module's stack).
THROTTLED: dict[str, Any] = {
    **SETTINGS,
    "challenge": {"limits": {"token_failures_per_ip": LIMIT, "token_failures_per_client": LIMIT}},
}


def address() -> str:
    """An address of this push's own (documentation range, random host)."""
    return f"198.51.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def assertion(stack: Stack, client_id: str = "jwt", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": stack.issuer,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": "rp-1"}, body, RP_KEY)


def b64url(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@dataclass
class Pushed:
    """One push: what was pushed, the PKCE verifier, and /par's answer."""

    stack: Stack
    sent: dict[str, str]
    verifier: str
    response: httpx.Response

    @property
    def request_uri(self) -> str:
        assert self.response.status_code == 201, (self.response.status_code, self.response.text)
        value: str = self.response.json()["request_uri"]
        return value

    async def authorize(self, **extra: str) -> Flow:
        """The browser's /authorize by reference (``extra``: front-channel parameters beside it)."""
        browser = self.stack.browser()
        params = {"client_id": self.sent["client_id"], "request_uri": self.request_uri, **extra}
        response = await browser.get("/authorize", params=params)
        return Flow(self.stack, browser, self.sent, self.verifier, response)


async def push(
    stack: Stack,
    client_id: str = "shop",
    *,
    auth: str = "basic",
    source: str | None = None,
    form: dict[str, str] | None = None,
    **params: str | None,
) -> Pushed:
    """POST /par as ``client_id`` (``auth``: basic, post, jwt or none) with alice's request
    (``request_params``, overridden by ``params``); ``form`` is added to the body as is."""
    verifier, challenge = pkce()
    sent = request_params(challenge, **{"client_id": client_id, "login_hint": "alice", **params})
    data = dict(sent)
    basic = None
    if auth == "basic":
        basic = (client_id, client_secret(client_id))
    elif auth == "post":
        data.update(client_id=client_id, client_secret=client_secret(client_id))
    elif auth == "jwt":
        data.update(client_assertion_type=ASSERTION_TYPE, client_assertion=assertion(stack))
    data.update(form or {})
    headers = {"X-Forwarded-For": source or address()}
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        response = await c.post(f"{stack.issuer}/par", data=data, auth=basic, headers=headers)
    return Pushed(stack, sent, verifier, response)


PUSHED_KEYS = pushed_key("").rsplit(":", 1)[0] + ":*"  # every pushed request's key


async def pushed_keys(redis: Redis) -> set[bytes]:
    return set(await redis.keys(PUSHED_KEYS))


def assert_refused(
    pushed: Pushed, status: int, error: str, stepup_error: str | None = None
) -> None:
    response = pushed.response
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    assert "request_uri" not in body
    if stepup_error is not None:
        assert body["stepup_error"] == stepup_error, body


def assert_request_uri_page(response: httpx.Response) -> None:
    """The pushed request is not there: a page (its redirect_uri is unknown), never a redirect."""
    assert response.status_code == 400, (response.status_code, response.text)
    assert "location" not in response.headers
    assert "<code>invalid_request_uri</code>" in response.text


# -- the endpoint --------------------------------------------------------------------------------


async def test_a_pushed_request_completes_the_step_up_by_reference(
    stack: Stack, redis: Redis
) -> None:
    pushed = await push(stack)
    response = pushed.response
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["expires_in"] == 60 and body["request_uri"].startswith(URN)
    assert len(body["request_uri"]) > len(URN) + 40  # 256 random bits
    # Kept under the value's SHA-256, never the value; with the client and the parameters.
    key = pushed_key(body["request_uri"])
    assert key.endswith(hashlib.sha256(body["request_uri"].encode()).hexdigest())
    record = json.loads(await redis.get(key))
    assert record["c"] == "shop" and record["p"]["state"] == pushed.sent["state"]
    assert "client_secret" not in record["p"]
    assert 0 < await redis.ttl(key) <= 60

    flow = await (await pushed.authorize()).show_challenge()
    result = await flow.approve()
    assert result["state"] == pushed.sent["state"] and result["iss"] == stack.issuer
    claims = await flow.id_token(result["code"])
    assert (claims["sub"], claims["aud"], claims["nonce"]) == (
        "alice",
        "shop",
        pushed.sent["nonce"],
    )


async def test_each_client_authentication_method_can_push(stack: Stack) -> None:
    for client_id, auth in (("shop", "basic"), ("post", "post"), ("jwt", "jwt")):
        pushed = await push(stack, client_id, auth=auth)
        assert pushed.response.status_code == 201, (auth, pushed.response.text)
        flow = await pushed.authorize()
        assert flow.token, (auth, flow.response.status_code, flow.response.text)


async def test_a_client_assertion_may_name_the_par_endpoint_as_audience(stack: Stack) -> None:
    for audience in (f"{stack.issuer}/par", stack.issuer):
        form = {"client_assertion": assertion(stack, aud=audience)}
        pushed = await push(stack, "jwt", auth="jwt", form=form)
        assert pushed.response.status_code == 201, (audience, pushed.response.text)


async def test_push_opens_no_vendor_session(stack: Stack, redis: Redis) -> None:
    before = len(await vendor_sessions(stack))
    challenges = set(await redis.keys(challenge_key("*")))
    pushed = await push(stack)
    assert pushed.response.status_code == 201
    assert len(await vendor_sessions(stack)) == before
    assert set(await redis.keys(challenge_key("*"))) == challenges


# -- refusals at /par ----------------------------------------------------------------------------


async def test_a_push_without_valid_client_authentication_is_401_and_keeps_nothing(
    stack: Stack, redis: Redis
) -> None:
    before = await pushed_keys(redis)
    refused = [
        await push(stack, auth="none"),
        await push(stack, auth="none", form={"client_secret": "wrong"}),
        await push(stack, "post", auth="none", form={"client_secret": "wrong"}),
        await push(stack, "jwt", auth="none", form={"client_assertion_type": ASSERTION_TYPE}),
        # a registered client using a method it did not register (shop: client_secret_basic)
        await push(stack, "shop", auth="post"),
    ]
    for pushed in refused:
        assert_refused(pushed, 401, "invalid_client")
    assert await pushed_keys(redis) == before


async def test_wrong_secrets_at_par_are_counted_by_the_token_endpoint_throttle(
    pool: StackPool,
) -> None:
    stack = await pool.get(settings=THROTTLED)
    source = address()
    wrong = {"client_secret": "wrong-secret-0123456789"}
    for _ in range(LIMIT["count"]):
        pushed = await push(stack, "guessed", auth="none", source=source, form=wrong)
        assert_refused(pushed, 401, "invalid_client")
    throttled = await push(stack, "guessed", source=source)  # now with the right secret
    assert_refused(throttled, 429, "temporarily_unavailable")
    assert 1 <= int(throttled.response.headers["retry-after"]) <= LIMIT["seconds"]
    # The same counters as /token: that address is refused there too.
    async with httpx.AsyncClient(verify=TLS) as c:
        token = await c.post(
            f"{stack.issuer}/token",
            data={"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI},
            auth=("guessed", client_secret("guessed")),
            headers={"X-Forwarded-For": source},
        )
    assert token.status_code == 429, token.text
    # Another address of the same client is still served.
    assert (await push(stack, "guessed")).response.status_code == 201


async def test_a_replayed_client_assertion_is_refused(stack: Stack) -> None:
    signed = assertion(stack)
    first = await push(stack, "jwt", auth="jwt", form={"client_assertion": signed})
    assert first.response.status_code == 201, first.response.text
    again = await push(stack, "jwt", auth="jwt", form={"client_assertion": signed})
    assert_refused(again, 401, "invalid_client")
    assert "already used" in again.response.json()["error_description"]


@pytest.mark.parametrize(
    ("params", "error", "stepup_error"),
    [
        ({"redirect_uri": "https://attacker.example/cb"}, "invalid_request", "invalid_request"),
        ({"client_id": "post"}, "invalid_request", "invalid_request"),
        ({"request_uri": URN + "x" * 43}, "invalid_request", "invalid_request"),
        ({"request_uri": "https://rp.example/ro.jwt"}, "invalid_request", "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type", "unsupported_response_type"),
        ({"response_type": None}, "invalid_request", "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request", "invalid_request"),
        ({"scope": "profile"}, "invalid_scope", "invalid_scope"),
        ({"prompt": "none login"}, "invalid_request", "invalid_request"),
        ({"login_hint": None}, "invalid_request", "subject_required"),
        ({"acr_values": "urn:nope"}, "unmet_authentication_requirements", "acr_unsupported"),
        ({"claims": "{not json"}, "invalid_request", "invalid_request"),
        ({"max_age": "-1"}, "invalid_request", "invalid_request"),
        (
            {"code_challenge": None, "code_challenge_method": None},
            "invalid_request",
            "pkce_required",
        ),
    ],
    ids=[
        "unregistered redirect_uri",
        "another client_id",
        "request_uri inside",
        "https request_uri inside",
        "response_type token",
        "no response_type",
        "PKCE plain",
        "scope without openid",
        "prompt none with another value",
        "no subject",
        "unknown acr",
        "claims not JSON",
        "negative max_age",
        "no PKCE",
    ],
)
async def test_a_push_is_validated_as_authorize_would(
    stack: Stack, redis: Redis, params: dict[str, str | None], error: str, stepup_error: str
) -> None:
    before = await pushed_keys(redis)
    form = {"client_id": str(params.pop("client_id"))} if "client_id" in params else None
    pushed = await push(stack, form=form, **params)
    assert_refused(pushed, 400, error, stepup_error)
    assert await pushed_keys(redis) == before


async def test_a_repeated_parameter_is_refused(stack: Stack) -> None:
    _, challenge = pkce()
    data = [*request_params(challenge, login_hint="alice").items(), ("login_hint", "bob")]
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.post(
            f"{stack.issuer}/par",
            content=httpx.QueryParams(data).__str__().encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": address(),
            },
            auth=("shop", client_secret("shop")),
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "login_hint" in response.json()["error_description"]


async def test_a_bad_request_object_is_refused_at_par(stack: Stack) -> None:
    unsigned = f"{b64url({'alg': 'none'})}.{b64url({'client_id': 'shop', 'login_hint': 'a'})}."
    pushed = await push(stack, request=unsigned)
    assert_refused(pushed, 400, "invalid_request_object", "invalid_request_object")
    forged = request_object(stack, "post", login_hint="alice")  # signed with another's secret
    assert_refused(await push(stack, request=forged), 400, "invalid_request_object")


async def test_an_oversized_body_is_413(stack: Stack, redis: Redis) -> None:
    before = await pushed_keys(redis)
    pushed = await push(stack, form={"padding": "x" * 70_000})
    assert_refused(pushed, 413, "invalid_request")
    assert await pushed_keys(redis) == before


async def test_other_methods_are_405_json(stack: Stack) -> None:
    async with httpx.AsyncClient(verify=TLS) as c:
        for method in ("GET", "PUT", "DELETE"):
            response = await c.request(method, f"{stack.issuer}/par")
            assert response.status_code == 405, (method, response.text)
            assert response.headers["allow"] == "POST"
            assert response.json()["error"] == "invalid_request"


async def test_redis_down_at_par_is_503() -> None:
    own = RedisProcess()
    own.start()
    try:
        async with running_stack(own.url, settings=SETTINGS) as stack:
            own.stop()
            pushed = await push(stack)
            assert_refused(pushed, 503, "temporarily_unavailable")
    finally:
        own.stop()


# -- using the request_uri -----------------------------------------------------------------------


async def test_a_request_uri_is_used_once(stack: Stack, redis: Redis) -> None:
    pushed = await push(stack)
    first = await pushed.authorize()
    assert first.token, first.response.text
    assert await redis.exists(pushed_key(pushed.request_uri)) == 0
    assert_request_uri_page((await pushed.authorize()).response)


async def test_concurrent_uses_of_one_request_uri_open_one_challenge(stack: Stack) -> None:
    pushed = await push(stack)
    flows = await asyncio.gather(*(pushed.authorize() for _ in range(5)))
    assert sum(1 for flow in flows if flow.token) == 1
    for flow in flows:
        if not flow.token:
            assert_request_uri_page(flow.response)


async def test_an_expired_request_uri_is_refused(stack: Stack, redis: Redis) -> None:
    pushed = await push(stack)
    key = pushed_key(pushed.request_uri)
    assert 0 < await redis.ttl(key) <= 60
    await redis.pexpire(key, 1)  # what Redis does by itself when the lifetime is over
    while await redis.exists(key):
        await redis.pexpire(key, 1)
    assert_request_uri_page((await pushed.authorize()).response)


async def test_the_lifetime_is_a_setting(pool: StackPool, redis: Redis) -> None:
    stack = await pool.get(settings={**SETTINGS, "par": {"request_uri_lifetime": 10}})
    pushed = await push(stack)
    assert pushed.response.json()["expires_in"] == 10
    assert 0 < await redis.ttl(pushed_key(pushed.request_uri)) <= 10


async def test_an_unknown_request_uri_is_a_page(stack: Stack) -> None:
    browser = stack.browser()
    for value in (URN + secrets.token_urlsafe(32), URN + "x" * 500):
        response = await browser.get(
            "/authorize",
            params={"client_id": "shop", "request_uri": value, "redirect_uri": REDIRECT_URI},
        )
        assert_request_uri_page(response)


async def test_another_clients_request_uri_is_refused_and_spent(stack: Stack) -> None:
    pushed = await push(stack)
    browser = stack.browser()
    stolen = await browser.get(
        "/authorize", params={"client_id": "post", "request_uri": pushed.request_uri}
    )
    assert_request_uri_page(stolen)
    assert_request_uri_page((await pushed.authorize()).response)


async def test_a_non_par_request_uri_is_still_not_supported(stack: Stack) -> None:
    flow = await push(stack)  # a pushed request exists; an https reference is another thing
    browser = stack.browser()
    sent = {**flow.sent, "request_uri": "https://rp.example/ro.jwt"}
    response = await browser.get("/authorize", params=sent)
    result = Flow(stack, browser, sent, flow.verifier, response).redirect
    assert result["error"] == "request_uri_not_supported" and result["state"] == sent["state"]


async def test_front_channel_parameters_cannot_override_the_pushed_ones(stack: Stack) -> None:
    pushed = await push(stack, login_hint="alice", acr_values=ACR)
    flow = await pushed.authorize(
        login_hint="bob",
        acr_values="urn:nope",
        state="from-the-query",
        nonce="from-the-query",
        redirect_uri="https://attacker.example/cb",
        prompt="none",
    )
    await flow.show_challenge()
    result = await flow.approve()
    assert result["state"] == pushed.sent["state"]
    claims = await flow.id_token(result["code"])
    assert claims["sub"] == "alice" and claims["acr"] == ACR
    assert claims["nonce"] == pushed.sent["nonce"]


async def test_a_pushed_prompt_none_is_answered_at_authorize(stack: Stack) -> None:
    """prompt=none may be served by a reused face check, which only /authorize can see: the push
    is accepted, and without a reuse /authorize answers login_required to the pushed redirect."""
    pushed = await push(stack, login_hint="alice", prompt="none")
    flow = await pushed.authorize()
    result = flow.redirect
    assert result["error"] == "login_required" and result["state"] == pushed.sent["state"]
    assert result["iss"] == stack.issuer


async def test_pushed_authorization_details_are_shown_and_come_back(stack: Stack) -> None:
    """RFC 9396 through RFC 9126: the details are validated at /par, shown on the challenge
    page, and returned in the token response and the id_token; a details parameter the browser
    adds beside the reference changes nothing."""
    transfer = [{"type": "transfer", "payee": "ACME Ltd"}]
    pushed = await push(stack, authorization_details=json.dumps(transfer))
    other = json.dumps([{"type": "transfer", "payee": "Mallory"}])
    flow = await pushed.authorize(authorization_details=other)
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert 'id="authorization-details"' in page.text and "Pay ACME Ltd" in page.text
    assert "Mallory" not in page.text
    result = await flow.approve()
    answer = await flow.redeem(result["code"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["authorization_details"] == transfer
    _, claims = await decode_id_token(stack, answer.json()["id_token"])
    assert claims["authorization_details"] == transfer and claims["txn"]


async def test_invalid_authorization_details_are_refused_at_par(stack: Stack) -> None:
    bad = json.dumps([{"type": "transfer", "payee": "ACME Ltd", "amount": "1.00"}])
    pushed = await push(stack, authorization_details=bad)
    assert_refused(pushed, 400, "invalid_authorization_details", "invalid_authorization_details")
    unknown = json.dumps([{"type": "payment_initiation"}])
    pushed = await push(stack, authorization_details=unknown)
    assert_refused(pushed, 400, "invalid_authorization_details", "invalid_authorization_details")


async def test_a_refusal_after_resolution_goes_to_the_pushed_redirect_uri(stack: Stack) -> None:
    pushed = await push(stack, login_hint="bob")  # the vendor does not know bob's face
    flow = await pushed.authorize(state="from-the-query")
    result = flow.redirect
    assert result["stepup_error"] == "not_enrolled"
    assert result["state"] == pushed.sent["state"] and result["iss"] == stack.issuer


async def test_a_pushed_signed_request_object_names_the_subject_once(stack: Stack) -> None:
    signed = request_object(stack, "shop", login_hint="alice", iat=int(time.time()))
    pushed = await push(stack, request=signed, login_hint=None)
    flow = await (await pushed.authorize()).show_challenge()
    result = await flow.approve()
    assert (await flow.id_token(result["code"]))["sub"] == "alice"
    # Its jti is recorded at /authorize: the same object pushed again is refused there.
    again = await push(stack, request=signed, login_hint=None)
    assert again.response.status_code == 201, again.response.text
    refused = (await again.authorize()).redirect
    assert refused["error"] == "invalid_request_object"
    assert refused["state"] == again.sent["state"]


async def test_a_client_that_requires_par_is_refused_without_it(stack: Stack) -> None:
    browser = stack.browser()
    verifier, challenge = pkce()
    sent = request_params(challenge, client_id="pushes", login_hint="alice")
    response = await browser.get("/authorize", params=sent)
    result = Flow(stack, browser, sent, verifier, response).redirect
    assert (result["error"], result["stepup_error"]) == ("invalid_request", "par_required")
    assert "/par" in result["error_description"]
    assert result["state"] == sent["state"] and result["iss"] == stack.issuer
    # With a pushed request it is served.
    flow = await (await push(stack, "pushes")).authorize()
    assert flow.token, flow.response.text


async def test_the_request_uri_never_reaches_the_logs(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pushed = await push(stack, login_hint="bob")
    await pushed.authorize()  # a refusal (logged as a step-up outcome)
    await pushed.authorize()  # spent
    stolen = await push(stack)
    await stack.browser().get(
        "/authorize", params={"client_id": "post", "request_uri": stolen.request_uri}
    )
    service = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(r.name.startswith("idenfy_stepup") for r in service)
    for value in (pushed.request_uri, stolen.request_uri):
        for record in service:
            assert value not in record.getMessage() and value not in str(record.__dict__)


# -- discovery -----------------------------------------------------------------------------------


async def test_discovery_advertises_the_par_endpoint(stack: Stack, pool: StackPool) -> None:
    async with httpx.AsyncClient(verify=TLS) as c:
        document = (await c.get(f"{stack.issuer}/.well-known/openid-configuration")).json()
    assert document["pushed_authorization_request_endpoint"] == f"{stack.issuer}/par"
    assert document["require_pushed_authorization_requests"] is False  # not every client does
    only = {"clients": [client_entry("pushes", require_pushed_authorization_requests=True)]}
    every = await pool.get(settings=only)
    async with httpx.AsyncClient(verify=TLS) as c:
        document = (await c.get(f"{every.issuer}/.well-known/openid-configuration")).json()
    assert document["require_pushed_authorization_requests"] is True
    assert document["pushed_authorization_request_endpoint"] == f"{every.issuer}/par"
