"""The Starlette → authlib request adapter: parameters already read, as multi-dicts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload


class Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: Mapping[str, list[str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list, params)
        # A repeated parameter keeps its first value here; authlib rejects repeats through
        # ``datalist`` (RFC 6749 §3.1: parameters MUST NOT be included more than once).
        self._data = {k: v[0] for k, v in params.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class AuthlibRequest(OAuth2Request):  # type: ignore[misc]
    """An authlib request built from parameters the endpoint has already read and bounded.

    ``uri`` is built from the configured issuer, never from the Host header.
    """

    def __init__(
        self,
        method: str,
        uri: str,
        params: Mapping[str, list[str]],
        headers: Mapping[str, str],
        *,
        form: bool,
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = Payload(params)
        self._form = self.payload.data if form else {}
        self._args = {} if form else self.payload.data
        self.stepup_client: Any = None  # set by /token once the client is authenticated
        self.stepup_code: Any = None
        self.stepup_request_object: dict[str, Any] | None = None  # verified claims, if any
        self.stepup_access_token: str = ""

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form
