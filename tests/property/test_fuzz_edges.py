"""Fuzzing the edges (security checklist, "every bad input gets a clear error and changes nothing").

Hypothesis throws malformed webhooks (random JSON, wrong types, huge and invalid UTF-8 bodies,
wrong content types; signed and unsigned), authorization requests (random, repeated, huge and
control-character parameters, GET and POST), token requests (random forms, bad Basic headers)
and forged challenge cookies at one provider + simulator stack over real HTTP.

Every answer is a 4xx or an error redirect to the registered redirect_uri (a well-formed signed
webhook for an unknown token: 200 with no effect), never a 5xx; and a challenge opened before
the fuzzing is still PENDING, byte for byte, after every single example.

The stack runs in a background thread with its own event loop, so the tests are plain
synchronous ``@given`` tests with a synchronous ``httpx.Client``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from redis import Redis

from idenfy_stepup.idenfy.webhook import sign
from idenfy_stepup.stepup.binding import COOKIE

from ..harness.redis import SECRETS_KEY, RedisProcess, challenge_key
from ..harness.rp import authorize_params, pkce, query
from ..harness.servers import TLS, Stack, start_stack
from ..harness.settings import CLIENT_SECRET, REDIRECT_URI, SIGNING_KEY

T = TypeVar("T")
DB = 3  # a database of its own, so nothing else's keys change under the snapshot
LIMIT = 65536  # idenfy.webhook_max_bytes and server.max_form_bytes defaults
SALT = "idenfy-stepup.challenge"
CANARY = "\x00canary\x00"  # replaced by the canary challenge's token at test time
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Live:
    """The running stack, a client for it, and the canary challenge every example must not move."""

    def __init__(
        self,
        stack: Stack,
        loop: asyncio.AbstractEventLoop,
        http: httpx.Client,
        redis: Redis,
        canary: str,
        canary_cookie: str,
        cookie_secret: str,
    ) -> None:
        self.stack, self.loop, self.http, self.redis = stack, loop, http, redis
        self.canary, self.canary_cookie, self.cookie_secret = canary, canary_cookie, cookie_secret
        self.before: dict[bytes, bytes] = {}

    def __repr__(self) -> str:
        return f"Live(canary={self.canary!r})"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.http.cookies.clear()  # every example stands alone
        response = self.http.request(method, url, **kwargs)
        if response.status_code >= 500:
            # The server thread logs the traceback just after answering. Let it finish before
            # this thread formats the failure: CPython 3.11 builds both with the ast module,
            # whose recursion counter is shared between threads (a SystemError otherwise).
            self.call(asyncio.sleep(0.05))
        return response

    def record(self) -> dict[bytes, bytes]:
        record: dict[bytes, bytes] = self.redis.hgetall(challenge_key(self.canary))  # type: ignore[assignment]
        return record

    def assert_nothing_changed(self) -> None:
        assert self.record() == self.before


@pytest.fixture(scope="module")
def live(redis_proc: RedisProcess) -> Iterator[Live]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-stack", daemon=True)
    thread.start()
    url = redis_proc.url.rsplit("/", 1)[0] + f"/{DB}"
    redis = Redis.from_url(url)
    redis.flushdb()
    stack = asyncio.run_coroutine_threadsafe(start_stack(url), loop).result(60)
    http = httpx.Client(base_url=stack.issuer, follow_redirects=False, timeout=20, verify=TLS)
    try:
        _, code_challenge = pkce()
        opened = http.get("/authorize", params=authorize_params(code_challenge))
        assert opened.status_code == 303, opened.text
        canary = opened.headers["location"].removeprefix("/challenge/")
        cookie = opened.cookies[COOKIE]
        secret = redis.hget(SECRETS_KEY, "cookie")
        assert isinstance(secret, bytes)
        live = Live(stack, loop, http, redis, canary, cookie, secret.decode())
        live.before = live.record()
        assert live.before[b"state"] == b"PENDING"
        yield live
        # The canary's own browser can still see and use its challenge.
        page = http.get(f"/challenge/{canary}", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert page.status_code == 200, page.text
        live.assert_nothing_changed()
    finally:
        http.close()
        redis.close()
        asyncio.run_coroutine_threadsafe(stack.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def assert_refused(response: httpx.Response, *, may_open: bool = False) -> str:
    """A 4xx, or a 303 to the registered redirect_uri carrying an error (never a code)."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code == 303:
        location = response.headers["location"]
        if may_open and location.startswith("/challenge/"):
            return "opened"  # the mutations left a valid request: a new challenge, as it should
        assert location.startswith(REDIRECT_URI + "?"), location
        result = query(location)
        assert result.get("error"), location
        assert "code" not in result, location
        return "error-redirect"
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    return "4xx"


# -- strategies ------------------------------------------------------------------------------------

ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
header_text = ascii_text.map(str.strip)  # what a client can send at all (no surrounding space)
any_text = st.text(max_size=60)  # every code point: control characters, surrogates excluded
huge_text = st.integers(1_000, 8_000).map(lambda n: "x" * n)
values = st.one_of(any_text, ascii_text, huge_text, st.sampled_from(["", " ", "\x00", "\r\n"]))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def maybe(good: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(good), json_values)


STATUSES = ["SUCCESS", "FAILED", "EXPIRED", "CANCELED", "PENDING", "success", "DONE", ""]
webhook_like = st.fixed_dictionaries(
    {},
    optional={
        "id": maybe("hook-fuzz") | st.integers(200, 300).map(lambda n: "i" * n),
        "token": st.one_of(
            st.just(CANARY),
            st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
            json_values,
            st.just("a" * 65),
            st.just("../x"),
        ),
        "status": st.sampled_from(STATUSES) | json_values,
        "failReason": st.sampled_from(["FACE_MISMATCH", "FACE_TOO_SMALL", "NOPE"]) | json_values,
        "scanRef": maybe("SCAN-ALICE"),
        "type": maybe("AUTHENTICATION"),
        "method": maybe("FACE_MATCHING"),
        "clientId": maybe("idenfy"),
        "facePhoto": maybe("https://example.invalid/p.jpg"),
        "riskTags": json_values,
    },
)


@st.composite
def webhook_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["like", "like", "json", "binary", "bad-utf8", "huge", "odd"]))
    if kind == "like":
        return json.dumps(draw(webhook_like), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "bad-utf8":
        body = json.dumps(draw(webhook_like)).encode()
        at = draw(st.integers(0, len(body)))
        return (
            body[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
            + body[at:]
        )
    if kind == "huge":
        size = draw(st.integers(LIMIT - 200, LIMIT + 2_000))
        return b'{"id":"h","token":"t","status":"SUCCESS","x":"' + b"a" * size + b'"}'
    return draw(
        st.sampled_from(
            [
                b"",
                b"null",
                b'{"status": NaN, "id": "a", "token": "t"}',
                b'{"id":"a","token":"t","status":"SUCCESS","status":"FAILED"}',
                b"[" * 30_000 + b"]" * 30_000,
                b'{"id":"a","token":"t","status":"SUCCESS"}' * 3,
                b'\xef\xbb\xbf{"id":"a","token":"t","status":"SUCCESS"}',
            ]
        )
    )


# content type → accepted by the webhook endpoint (docs/idenfy-api.md, section 2: JSON only)
CONTENT_TYPES: dict[str | None, bool] = {
    "application/json": True,
    "application/json; charset=utf-8": True,
    "APPLICATION/JSON": True,
    "application/vnd.idenfy+json": True,
    None: False,
    "": False,
    "text/plain": False,
    "application/x-www-form-urlencoded": False,
    "multipart/form-data; boundary=x": False,
    "application/jsonp": False,
    "json": False,
}
EVENT_TYPES = [
    "FACIAL_AUTHENTICATION",
    "facial_authentication",
    "Facial_Authentication",
    None,
    "",
    "IDENTIFICATION",
    "FACIAL_AUTHENTICATION_X",
]
SIGNATURES = ["valid", "valid-upper", "wrong-key", "other-body", "random-hex", "garbage", "missing"]


def signature_for(kind: str, body: bytes, garbage: str) -> str | None:
    valid = sign(body, SIGNING_KEY)
    return {
        "valid": valid,
        "valid-upper": valid.upper(),
        "wrong-key": sign(body, SIGNING_KEY + "x"),
        "other-body": sign(body + b" ", SIGNING_KEY),
        "random-hex": secrets.token_hex(32),
        "garbage": garbage,
        "missing": None,
    }[kind]


# -- webhooks --------------------------------------------------------------------------------------


@FUZZ
@given(
    body=webhook_bodies(),
    signature=st.sampled_from(SIGNATURES),
    garbage=header_text,
    content_type=st.sampled_from(list(CONTENT_TYPES)),
    event_type=st.sampled_from(EVENT_TYPES) | header_text,
)
def test_fuzzed_webhooks_are_refused_and_change_nothing(
    live: Live,
    body: bytes,
    signature: str,
    garbage: str,
    content_type: str | None,
    event_type: str | None,
) -> None:
    signed = signature.startswith("valid")
    if CANARY.encode() in body:
        # Only a forged webhook may name the canary: a genuine one would rightly move it.
        assume(not signed)
        body = body.replace(json.dumps(CANARY).encode(), json.dumps(live.canary).encode())
    headers: dict[str, str] = {}
    sig = signature_for(signature, body, garbage)
    if sig is not None:
        headers["Idenfy-Signature"] = sig
    if content_type is not None:
        headers["Content-Type"] = content_type
    if event_type is not None:
        headers["Idenfy-Event-Type"] = event_type
    response = live.request("POST", "/webhooks/idenfy", content=body, headers=headers)

    accepts_event = (event_type or "").strip().upper() == "FACIAL_AUTHENTICATION"
    if len(body) > LIMIT:
        expected: set[int] = {413}
    elif not signed:
        expected = {401}
    elif not CONTENT_TYPES[content_type]:
        expected = {415}
    elif not accepts_event:
        expected = {400}
    else:
        expected = {200, 400}
    assert response.status_code in expected, (response.status_code, response.text, body[:200])
    event(f"webhook -> {response.status_code}")
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code == 200:
        # Signed and well formed, for a token we never issued (or not final): no effect.
        assert response.json()["result"] in ("unknown", "pending"), response.text
    else:
        assert set(response.json()) == {"error"}
    live.assert_nothing_changed()


# -- /authorize ------------------------------------------------------------------------------------

PARAM_NAMES = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "login_hint",
    "acr_values",
    "claims",
    "prompt",
    "max_age",
    "request",
    "request_uri",
    "id_token_hint",
    "response_mode",
    "ui_locales",
]
RAW_FRAGMENTS = [
    "&state=%FF",
    "&%C3%28=1",
    "&nonce=%ED%A0%80",
    "&a=%",
    "&&&",
    "&=x",
    "&%zz=1",
    ";x=1",
    "&login_hint=%00",
    "&claims=%7B%7D",
    "&redirect_uri=http://evil.invalid/",
]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("drop"), st.sampled_from(PARAM_NAMES), st.just("")),
        st.tuples(st.just("set"), st.sampled_from(PARAM_NAMES), values),
        st.tuples(st.just("repeat"), st.sampled_from(PARAM_NAMES), values),
        st.tuples(st.just("extra"), any_text, values),
        st.tuples(st.just("raw"), st.sampled_from(RAW_FRAGMENTS), st.just("")),
    ),
    min_size=1,
    max_size=5,
)


def mutated_query(changes: list[tuple[str, str, str]]) -> tuple[str, list[tuple[str, str]]]:
    _, code_challenge = pkce()
    pairs = list(authorize_params(code_challenge).items())
    raw = ""
    for op, key, value in changes:
        if op == "drop":
            pairs = [(k, v) for k, v in pairs if k != key]
        elif op == "set":
            pairs = [(k, v) for k, v in pairs if k != key] + [(key, value)]
        elif op in ("repeat", "extra"):
            pairs.append((key, value))
        else:
            raw += key
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass") + raw, pairs


@FUZZ
@given(
    changes=ops,
    method=st.sampled_from(["GET", "POST"]),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "application/json",
            "text/plain",
            None,
        ]
    ),
)
def test_fuzzed_authorization_requests_never_fail_badly(
    live: Live, changes: list[tuple[str, str, str]], method: str, content_type: str | None
) -> None:
    qs, _ = mutated_query(changes)
    if method == "GET":
        response = live.request("GET", f"/authorize?{qs}")
    else:
        headers = {"Content-Type": content_type} if content_type else {}
        response = live.request("POST", "/authorize", content=qs.encode(), headers=headers)
    event(f"{method} -> {assert_refused(response, may_open=True)}")
    live.assert_nothing_changed()


@pytest.mark.parametrize(
    ("name", "value"),
    [("response_type", v) for v in ["\x1f", '"', "\\", "é", "code\n"]]
    + [("redirect_uri", v) for v in ["\x1f", REDIRECT_URI + '"', REDIRECT_URI + "é"]],
)
def test_echoed_parameter_with_odd_characters(live: Live, name: str, value: str) -> None:
    _, code_challenge = pkce()
    params = {**authorize_params(code_challenge), name: value}
    response = live.request("GET", "/authorize", params=params)
    # response_type → an invalid_request error redirect (client and redirect_uri are valid);
    # redirect_uri → a 400 error page (no redirect before the client is validated). authlib
    # alone would raise: a 500.
    assert_refused(response)
    live.assert_nothing_changed()


@FUZZ
@given(
    body=st.binary(max_size=200) | st.integers(LIMIT - 100, LIMIT + 1000).map(lambda n: b"a" * n)
)
def test_fuzzed_authorization_bodies(live: Live, body: bytes) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = live.request("POST", "/authorize", content=body, headers=headers)
    event(f"body -> {assert_refused(response, may_open=True)} {response.status_code}")
    live.assert_nothing_changed()


@FUZZ
@given(changes=ops)
def test_fuzzed_pushed_requests_never_fail_badly(
    live: Live, changes: list[tuple[str, str, str]]
) -> None:
    """A client pushes a mutated request to /par: JSON 201 or 400, never more; what it pushed
    then goes through /authorize as any request does."""
    qs, _ = mutated_query(changes)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = live.request(
        "POST", "/par", content=qs.encode(), headers=headers, auth=("shop", CLIENT_SECRET)
    )
    assert response.status_code in (201, 400), (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    event(f"par -> {response.status_code} {response.json().get('error', 'pushed')}")
    if response.status_code == 201:
        params = {"client_id": "shop", "request_uri": response.json()["request_uri"]}
        assert_refused(live.request("GET", "/authorize", params=params), may_open=True)
    live.assert_nothing_changed()


# -- /token ----------------------------------------------------------------------------------------

TOKEN_FIELDS = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
]
token_forms = st.lists(
    st.tuples(
        st.sampled_from(TOKEN_FIELDS) | any_text,
        st.sampled_from(["authorization_code", "shop", REDIRECT_URI, CLIENT_SECRET]) | values,
    ),
    max_size=8,
)
basic_headers = st.one_of(
    st.none(),
    st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.builds(lambda s: "Basic " + base64.b64encode(b"shop:" + s).decode(), st.binary(max_size=20)),
    st.just("Basic " + base64.b64encode(f"shop:{CLIENT_SECRET}".encode()).decode()),
    header_text.map(lambda s: f"Basic {s}".strip()),
    st.sampled_from(
        ["Basic", "Basic ", "Bearer abc", "basic Zm9vOmJhcg==", "Basic ===", "Digest x"]
    ),
)


@FUZZ
@given(
    form=token_forms,
    authorization=basic_headers,
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "text/plain", None]
    ),
    raw=st.none() | st.binary(max_size=200),
)
def test_fuzzed_token_requests_are_refused(
    live: Live,
    form: list[tuple[str, str]],
    authorization: str | None,
    content_type: str | None,
    raw: bytes | None,
) -> None:
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["Authorization"] = authorization = authorization.strip()
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = raw if raw is not None else urlencode(form, errors="surrogatepass").encode()
    response = live.request("POST", "/token", content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    event(f"token -> {response.status_code} {response.json()['error']}")
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"], response.text
    if response.status_code == 401 and authorization and authorization.startswith("Basic "):
        assert "www-authenticate" in response.headers
    live.assert_nothing_changed()


# -- challenge cookies -----------------------------------------------------------------------------


class OldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 10 * 86400


ENDPOINTS = [
    ("GET", ""),
    ("GET", "/events"),
    ("GET", "/finish"),
    ("POST", "/cancel"),
    ("POST", "/retry"),
    ("POST", "/give-up"),
]


@st.composite
def forged_cookies(draw: st.DrawFn, live: Live) -> str:
    kind = draw(
        st.sampled_from(["random", "tampered", "wrong-key", "signed-junk", "expired", "huge"])
    )
    canary = live.canary
    if kind == "random":
        return draw(header_text)
    if kind == "tampered":
        cookie = live.canary_cookie
        at = draw(st.integers(0, len(cookie) - 1))
        char = draw(st.sampled_from("AbZ09-_."))
        assume(cookie[at] != char)
        return cookie[:at] + char + cookie[at + 1 :]
    if kind == "huge":
        return live.canary_cookie + "A" * draw(st.integers(1, 5000))
    payload = draw(
        st.one_of(
            st.fixed_dictionaries({"t": st.just(canary) | any_text, "s": any_text | json_values}),
            json_values,
        )
    )
    if kind == "wrong-key":
        return URLSafeTimedSerializer("not-the-secret", salt=SALT).dumps(payload)
    signer = URLSafeTimedSerializer(live.cookie_secret, salt=SALT)
    if kind == "expired":
        # The canary's own cookie, re-signed ten days ago: expired, so worth nothing.
        real = signer.loads(live.canary_cookie)
        return URLSafeTimedSerializer(live.cookie_secret, salt=SALT, signer=OldSigner).dumps(real)
    # Signed with the real key but not issued for this browser and challenge.
    assume(
        not (
            isinstance(payload, dict) and payload.get("s") == signer.loads(live.canary_cookie)["s"]
        )
    )
    return signer.dumps(payload)


@FUZZ
@given(
    data=st.data(),
    endpoint=st.sampled_from(ENDPOINTS),
    target=st.sampled_from(["canary", "canary", "unknown", "invalid"]),
)
def test_forged_cookies_open_nothing(
    live: Live, data: st.DataObject, endpoint: tuple[str, str], target: str
) -> None:
    cookie = data.draw(forged_cookies(live))
    assume(cookie != live.canary_cookie)
    token = {
        "canary": live.canary,
        "unknown": secrets.token_urlsafe(16),
        "invalid": quote(data.draw(st.sampled_from(["a" * 65, "a b", "%00", "é", "a/b", "..."]))),
    }[target]
    method, suffix = endpoint
    response = live.request(
        method, f"/challenge/{token}{suffix}", headers={"Cookie": f"{COOKIE}={cookie}"}
    )
    event(f"{method} {suffix or '/'} -> {response.status_code}")
    if response.status_code == 200 and suffix == "/events":
        # A cookie signed with the provider's own key (only the provider can make one) but
        # for another browser: the stream says "done" at once, and the finish it points to
        # refuses the cookie. It tells nothing about the challenge and changes nothing.
        assert response.text.endswith(
            f'event: done\ndata: {{"finish": "/challenge/{token}/finish"}}\n\n'
        )
    else:
        assert response.status_code in (403, 404, 410), (response.status_code, response.text[:300])
    live.assert_nothing_changed()
