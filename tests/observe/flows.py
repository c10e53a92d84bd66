"""A whole in-process step-up, with the push stream waiting when the webhook lands."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette

from ..harness.fake_vendor import FakeIdenfy
from ..harness.rp import challenge_token, pkce, query, request_params
from ..harness.settings import CLIENT_SECRET, REDIRECT_URI


async def approved_flow(browser: httpx.AsyncClient, vendor: FakeIdenfy, app: Starlette) -> str:
    """alice steps up for ``shop``: authorize, page, a waiting push stream, the signed
    webhook, finish and the token request. Returns the challenge token."""
    verifier, code_challenge = pkce()
    sent = request_params(code_challenge, login_hint="alice")
    started = await browser.get("/authorize", params=sent)
    token = challenge_token(started)
    assert token, started.text
    assert (await browser.get(f"/challenge/{token}")).status_code == 200
    stream = asyncio.create_task(browser.get(f"/challenge/{token}/events"))
    notifier = app.state.runtime.notifier
    for _ in range(2000):  # until the stream waits for the wake-up (a state, not a duration)
        if stream.done() or notifier._waiters.get(token):
            break
        await asyncio.sleep(0.001)
    body, headers = vendor.webhook(token, "SUCCESS")
    hook = await browser.post("/webhooks/idenfy", content=body, headers=headers)
    assert hook.json() == {"result": "applied"}, hook.text
    events = await stream
    assert "event: done" in events.text, events.text
    finish = await browser.get(f"/challenge/{token}/finish")
    code = query(finish.headers["location"])["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    tokens = await browser.post("/token", data=form, auth=("shop", CLIENT_SECRET))
    assert tokens.status_code == 200, tokens.text
    return token
