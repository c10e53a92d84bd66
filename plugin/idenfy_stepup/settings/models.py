"""Typed, frozen settings read once from one YAML file; every error names its key path."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..i18n import SHIPPED
from ..idenfy.risk import DEFAULT, DEFAULT_POLICY, RiskAction, effective_policy
from ..stepup.details import DEFAULT_MAX_BYTES, DetailType, DetailTypeError, compile_type
from ..stepup.outcomes import OUTCOME_NAMES

FaceMethod = Literal["FACE_MATCHING", "ACTIVE_LIVENESS"]
SigningAlg = Literal["RS256", "ES256"]
CheckStatusType = Literal["AUTHENTICATION", "ENROLLMENT", "IDENTIFICATION"]
SubjectHint = Literal["request_object", "id_token_hint", "login_hint"]
AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]

DEFAULT_ACR = "urn:idenfy:stepup:face"
_RISK_TAG = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ManagementSettings(_Model):
    """The management listener (/metrics, /healthz, /readyz), apart from the public port;
    ``port: null`` switches it off."""

    host: str = "127.0.0.1"
    port: int | None = Field(9000, ge=0, le=65535)


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_form_bytes: int = Field(65536, ge=1024, le=10 * 1024 * 1024)
    trusted_proxies: tuple[str, ...] = ()
    workers: int = Field(1, ge=1, le=64)
    # The HTTP edge (web/edge.py): slow and oversized requests are cut off before the app.
    header_timeout: float = Field(15.0, ge=1.0, le=300.0)
    body_timeout: float = Field(30.0, ge=1.0, le=600.0)
    keep_alive_timeout: int = Field(5, ge=1, le=300)
    max_header_bytes: int = Field(16384, ge=1024, le=1024 * 1024)
    max_request_line_bytes: int = Field(8192, ge=256, le=1024 * 1024)
    max_connections: int = Field(16384, ge=16, le=1_000_000)
    management: ManagementSettings = ManagementSettings()
    # One line per request on the idenfy_stepup.access logger (route template, never a token).
    access_log: bool = True

    @model_validator(mode="after")
    def _networks(self) -> ServerSettings:
        _check_networks(self.trusted_proxies)
        if self.max_request_line_bytes > self.max_header_bytes:
            raise ValueError("max_request_line_bytes cannot exceed max_header_bytes")
        return self


def _check_networks(entries: tuple[str, ...]) -> None:
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None


class RedisSettings(_Model):
    url: str = "embedded"
    data_dir: Path = Path("data")
    key_prefix: str = Field("stepup", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    socket_timeout: float = Field(2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _known_scheme(self) -> RedisSettings:
        schemes = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster")
        if self.url != "embedded" and urlsplit(self.url).scheme not in schemes:
            raise ValueError(f"url must be 'embedded' or start with one of {', '.join(schemes)}")
        return self


class SigningKey(_Model):
    kid: str = Field(min_length=1, max_length=128)
    alg: SigningAlg = "RS256"
    private_key: SecretStr | None = None
    private_key_file: Path | None = None
    publish_only: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> SigningKey:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of private_key or private_key_file")
        return self

    def pem(self) -> str:
        if self.private_key is not None:
            return self.private_key.get_secret_value()
        assert self.private_key_file is not None
        return self.private_key_file.read_text()


def kek_bytes(text: str) -> bytes:
    """A key-encryption key: 32 bytes as 64 hex digits or base64url (padding optional)."""
    text = text.strip()
    try:
        raw = (
            bytes.fromhex(text)
            if len(text) == 64
            else base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        )
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        # Never echo the value: it is a secret, even when malformed.
        raise ValueError("must be 32 random bytes, as 64 hex digits or base64url")
    return raw


class KeysSettings(_Model):
    signing: tuple[SigningKey, ...] = ()
    generate_alg: SigningAlg = "RS256"
    id_token_lifetime: int = Field(300, ge=30, le=86400)
    access_token_lifetime: int = Field(300, ge=30, le=86400)
    # Encrypts the generated keys and cookie secret in Redis; the previous one still decrypts.
    encryption_key: SecretStr | None = None
    encryption_key_previous: SecretStr | None = None

    @field_validator("encryption_key", "encryption_key_previous", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # ``${VAR:-}`` gives "": the key is simply not set.
        return None if value == "" else value

    @field_validator("encryption_key", "encryption_key_previous")
    @classmethod
    def _a_256_bit_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            kek_bytes(value.get_secret_value())
        return value

    # How long after its exp an id_token we issued still names its subject as an id_token_hint.
    id_token_hint_tolerance: int = Field(600, ge=0, le=86400)

    @model_validator(mode="after")
    def _one_active(self) -> KeysSettings:
        if self.signing and all(k.publish_only for k in self.signing):
            raise ValueError("at least one signing key must not be publish_only")
        if self.signing and not any(k.alg == "RS256" and not k.publish_only for k in self.signing):
            # OIDC Discovery §3: RS256 MUST be among the id_token signing algorithms.
            raise ValueError("signing needs an active RS256 key (OIDC Discovery §3)")
        kids = [k.kid for k in self.signing]
        if len(set(kids)) != len(kids):
            raise ValueError("every signing key needs a distinct kid")
        if self.encryption_key_previous is not None and self.encryption_key is None:
            raise ValueError("encryption_key_previous needs encryption_key (the new key)")
        return self


class CookieSettings(_Model):
    secret: SecretStr | None = None
    secure: Literal["auto"] | bool = "auto"
    max_age: int = Field(1800, ge=60, le=86400)


class SimulatorSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    public_url: str | None = None
    api_key: str = "simulator-api-key"
    api_secret: SecretStr = SecretStr("simulator-api-secret")
    client_id: str = "idenfy-stepup-simulator"
    scan_refs: dict[str, CheckStatusType] = Field(default_factory=dict)
    webhook_url: str | None = None
    webhook_delay_ms: int = Field(0, ge=0, le=60000)

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class BreakerSettings(_Model):
    """The circuit breaker around iDenfy's API (idenfy/breaker.py), one per process."""

    # Failures in a row (timeouts, connection errors, 5xx, 429) within `window` seconds that
    # open it; an answer in between starts the count again. 0: never opens.
    failures: int = Field(5, ge=0, le=1000)
    window: float = Field(30.0, gt=0, le=3600)
    # While open every call fails at once (vendor_unavailable); then one probe call decides.
    open_seconds: float = Field(15.0, gt=0, le=3600)
    # /readyz probes an idle vendor (no answer for this long) at most this often; 0: never.
    probe_interval: float = Field(30.0, ge=0, le=3600)
    # false: /readyz still names a vendor that is down, but answers 200 for it.
    in_readiness: bool = True


class IdenfySettings(_Model):
    mode: Literal["live", "simulator"] = "live"
    api_base: str = "https://ivs.idenfy.com"
    iframe_base: str = "https://face.authentication.idenfy.com"
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    webhook_signing_key: SecretStr | None = None
    webhook_signing_key_previous: SecretStr | None = None
    token_lifetime: int = Field(600, ge=60, le=2_592_000)
    # Forces the vendor's frame language for every session; None sends each session's page
    # language (ui.*, negotiated per request).
    locale: str | None = Field(None, pattern=r"^[a-z]{2}$")
    timeout: float = Field(5.0, gt=0, le=60)
    webhook_max_bytes: int = Field(65536, ge=1024, le=1024 * 1024)
    webhook_allowed_ips: tuple[str, ...] = ()
    # riskTags of a SUCCESS webhook: tag → deny | allow; `default` for every tag not named.
    # Laid over the built-in policy (everything denied).
    risk_tags: dict[str, RiskAction] = Field(default_factory=lambda: dict(DEFAULT_POLICY))
    # check-status ENROLLMENT (the face reference is being captured, not compared): accepted,
    # and marked in the id_token; false refuses it at /authorize (enrollment_required).
    allow_enrollment: bool = True
    # The webhook's ipAddress against the address that opened the challenge.
    webhook_ip_policy: Literal["off", "log", "deny"] = "log"
    breaker: BreakerSettings = BreakerSettings()
    simulator: SimulatorSettings = SimulatorSettings()

    @model_validator(mode="after")
    def _live_needs_credentials(self) -> IdenfySettings:
        _check_networks(self.webhook_allowed_ips)
        for tag in self.risk_tags:
            if tag != DEFAULT and _RISK_TAG.fullmatch(tag) is None:
                raise ValueError(
                    f"risk_tags: {tag!r} must be an upper-case tag such as UNTRUSTED_ENVIRONMENT "
                    f"or {DEFAULT!r}"
                )
        if self.mode == "live":
            missing = [
                name
                for name in ("api_key", "api_secret", "webhook_signing_key")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"mode 'live' requires {', '.join(missing)}")
        return self

    def risk_policy(self) -> dict[str, RiskAction]:
        return effective_policy(self.risk_tags)

    def effective_api_base(self) -> str:
        base = self.simulator.base_url() if self.mode == "simulator" else self.api_base
        return base.rstrip("/")

    def effective_iframe_base(self) -> str:
        base = self.simulator.base_url() if self.mode == "simulator" else self.iframe_base
        return base.rstrip("/")

    def credentials(self) -> tuple[str, str]:
        if self.mode == "simulator" and self.api_key is None:
            return self.simulator.api_key, self.simulator.api_secret.get_secret_value()
        assert self.api_key is not None and self.api_secret is not None
        return self.api_key.get_secret_value(), self.api_secret.get_secret_value()


class TrustedIssuer(_Model):
    issuer: str
    jwks: dict[str, Any] | None = None
    jwks_file: Path | None = None
    subject_claim: str = "sub"
    # The aud values a hint must carry one of; None means the requesting client's client_id.
    audience: tuple[str, ...] | None = Field(None, min_length=1)
    # How long after its exp an upstream id_token still names its subject.
    expired_tolerance: int = Field(600, ge=0, le=86400)

    @model_validator(mode="after")
    def _one_source(self) -> TrustedIssuer:
        if (self.jwks is None) == (self.jwks_file is None):
            raise ValueError("give exactly one of jwks or jwks_file")
        return self


class DirectorySettings(_Model):
    static: dict[str, str] = Field(default_factory=dict)
    redis: bool = True
    trusted_issuers: tuple[TrustedIssuer, ...] = ()


class AcrLevel(_Model):
    method: FaceMethod = "FACE_MATCHING"


class AcrSettings(_Model):
    levels: dict[str, AcrLevel] = Field(default_factory=lambda: {DEFAULT_ACR: AcrLevel()})
    default: str = DEFAULT_ACR

    @model_validator(mode="after")
    def _default_is_a_level(self) -> AcrSettings:
        if not self.levels:
            raise ValueError("levels must name at least one acr value")
        if self.default not in self.levels:
            raise ValueError(f"default {self.default!r} is not one of levels")
        return self


class ClientSettings(_Model):
    client_id: str = Field(min_length=1, max_length=255)
    client_secret: SecretStr | None = None
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    subject_hints: tuple[SubjectHint, ...] = ("request_object", "id_token_hint")
    require_pkce: bool = True
    iss_on_error: bool = True
    strict_acr_values: bool = True
    id_token_signed_response_alg: SigningAlg = "RS256"
    # How far ahead a request object's exp may be (its jti is remembered that long).
    request_object_max_lifetime: int = Field(600, ge=30, le=3600)
    name: str | None = None
    # RFC 9126 §6: /authorize only with a request_uri from /par (anything else: par_required).
    require_pushed_authorization_requests: bool = False
    # The subject stepped up when a request names nobody: for an OpenID Foundation conformance
    # run only, refused outside idenfy.mode simulator (a claimed subject, like a login_hint).
    conformance_subject: str | None = Field(None, min_length=1, max_length=255)
    # Seconds a successful face check may answer this client's later requests from the same
    # browser (stepup/reuse.py); 0: every step-up is a new face check.
    reuse_within: int = Field(0, ge=0, le=3600)
    # The authorization_details types (RFC 9396) this client may send; none by default.
    authorization_details_types: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _coherent(self) -> ClientSettings:
        for uri in self.redirect_uris:
            parts = urlsplit(uri)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise ValueError(f"redirect_uris: {uri!r} must be absolute with no fragment")
        needs_secret = self.token_endpoint_auth_method != "private_key_jwt"
        if needs_secret and self.client_secret is None:
            raise ValueError(f"{self.token_endpoint_auth_method} requires client_secret")
        if not needs_secret and self.jwks is None:
            raise ValueError("private_key_jwt requires jwks (the client's public keys)")
        return self


class ParSettings(_Model):
    """Pushed authorization requests (RFC 9126)."""

    # How long a request_uri from /par may be used (once); RFC 9126 §2.2 suggests 5 to 600 s,
    # and a short life keeps what was pushed from waiting long for a browser.
    request_uri_lifetime: int = Field(60, ge=5, le=60)


class AuthorizationDetailTypeSettings(_Model):
    """One authorization_details type: a JSON Schema (closed, see ``stepup.details``) and the
    text the person is shown, one string or one per language tag (``en`` required)."""

    # ``schema`` is BaseModel's own name: the field is ``json_schema``, spelt ``schema`` in YAML.
    json_schema: dict[str, Any] = Field(alias="schema")
    display: str | dict[str, str]

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from_details(lambda: compile_type("checked", value, "-"))
        return value

    @field_validator("display")
    @classmethod
    def _valid_display(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        from_details(lambda: compile_type("checked", {"type": "object"}, value))
        return value


def from_details(build: Any) -> Any:
    """A type definition's problem as a settings error (pydantic reports ValueError's text)."""
    try:
        return build()
    except DetailTypeError as exc:
        raise ValueError(str(exc)) from None


class AuthorizationDetailsSettings(_Model):
    """Rich Authorization Requests (RFC 9396): the detail types /authorize accepts."""

    types: dict[str, AuthorizationDetailTypeSettings] = Field(default_factory=dict)
    # The authorization_details parameter's size, in bytes of its JSON text.
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=256, le=65536)
    _compiled: dict[str, DetailType] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _compile(self) -> AuthorizationDetailsSettings:
        self._compiled = {
            name: from_details(lambda n=name, t=t: compile_type(n, t.json_schema, t.display))
            for name, t in self.types.items()
        }
        return self

    def compiled(self) -> dict[str, DetailType]:
        """The types' validators and display templates, compiled once at load time."""
        return self._compiled


class ErrorOverride(_Model):
    error: str | None = Field(None, pattern=r"^[a-z_]{3,64}$")
    stepup_error: str | None = Field(None, pattern=r"^[a-z_]{3,64}$")
    description: str | None = None
    hint: str | None = None
    retryable: bool | None = None


class RateLimit(_Model):
    """At most ``count`` events per ``seconds`` (a fixed window opened by the first event)."""

    count: int = Field(ge=1, le=1_000_000)
    seconds: int = Field(ge=1, le=86400)


def _disabled_as_none(value: Any) -> Any:
    # 0, null, false or {count: 0} switch a limit off.
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, dict) and value.get("count") == 0:
        return None
    return value


OptionalLimit = Annotated[RateLimit | None, BeforeValidator(_disabled_as_none)]


def _refuse_replaced(data: Any, replaced: dict[str, str]) -> Any:
    """A section's raw keys, refused with its replacement's name when one is a removed key."""
    if isinstance(data, dict):
        for old, new in replaced.items():
            if old in data:
                raise ValueError(f"{old} was replaced by {new} (see config/example.yaml)")
    return data


# Limits that counted every request, and so let anyone rate-limit a named person (a claimed
# login_hint) or a whole corporate NAT; kept here only to explain the replacement.
_REPLACED_LIMITS = {
    "authorize_per_ip": "failures_per_ip",
    "challenges_per_ip": "failures_per_ip and open_challenges_per_ip",
    "authorize_per_subject": "failures_per_subject",
    "challenges_per_subject": "failures_per_subject",
}


class LimitSettings(_Model):
    """Abuse limits (Redis counters). Successes and flows still in progress never count."""

    # Failed, expired and canceled face checks, and refused requests, from one client address.
    failures_per_ip: OptionalLimit = RateLimit(count=100, seconds=600)
    # Vendor sessions one address may hold open at once (each spends iDenfy credit).
    open_challenges_per_ip: int | None = Field(200, ge=0, le=1_000_000)
    # Failed face checks of challenges whose subject a signed hint named (never a login_hint).
    failures_per_subject: OptionalLimit = RateLimit(count=5, seconds=600)
    spoof_lockout_seconds: int | None = Field(900, ge=0, le=30 * 86400)
    # Failed client authentication at /token, per client_id and per address: 429.
    token_failures_per_client: OptionalLimit = RateLimit(count=20, seconds=60)
    token_failures_per_ip: OptionalLimit = RateLimit(count=20, seconds=60)

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        return _refuse_replaced(data, _REPLACED_LIMITS)


# Push settings whose behaviour is gone: a stream now lasts as long as its challenge.
_REPLACED_PUSH = {
    "push_timeout": "push_keepalive (a push stream now lasts as long as its challenge)",
}


class ChallengeSettings(_Model):
    max_attempts: int = Field(3, ge=1, le=10)
    grace_seconds: int = Field(900, ge=60, le=86400)
    code_lifetime: int = Field(60, ge=10, le=60)
    # Seconds between keep-alive comments on an open push stream: below the idle timeout of
    # every proxy in between (nginx and most load balancers cut at 60 s).
    push_keepalive: int = Field(30, ge=5, le=120)
    # Concurrent push streams: a browser needs one or two per challenge.
    push_streams_per_challenge: int = Field(3, ge=1, le=100)
    push_streams_per_ip: int = Field(1000, ge=1, le=1_000_000)
    limits: LimitSettings = LimitSettings()

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        return _refuse_replaced(data, _REPLACED_PUSH)


# A file name under the static folders: relative, no "..", no hidden files, no query.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_STATIC_NAME = re.compile(rf"{_SEGMENT}(/{_SEGMENT}){{0,7}}")


def _existing_folder(value: Path | None) -> Path | None:
    # Resolved now, so that the folder does not change with the working directory later.
    if value is not None and not value.is_dir():
        raise ValueError(f"{value} is not an existing folder")
    return None if value is None else value.resolve()


class UiSettings(_Model):
    """The pages as the person sees them (docs/branding.md)."""

    # The operator's brand: their folders come first, ours fill in what they lack.
    templates_dir: Annotated[Path | None, AfterValidator(_existing_folder)] = None
    static_dir: Annotated[Path | None, AfterValidator(_existing_folder)] = None
    # Shown in the header and every <title>; unset: "Identity check", in the page's language.
    site_name: str | None = Field(None, min_length=1, max_length=80)
    # A file in the static folders (the operator's, else ours), shown in the page header.
    logo: str | None = None

    @field_validator("logo")
    @classmethod
    def _static_name(cls, value: str | None) -> str | None:
        if value is not None and _STATIC_NAME.fullmatch(value) is None:
            raise ValueError(
                "must be a file name in the static folders, such as logo.svg or brand/logo.png "
                "(letters, digits, _ . -; no leading dot or slash)"
            )
        return value

    # The pages' languages (docs/translations.md): ``default_language`` when neither
    # ui_locales nor Accept-Language names one of ``languages``, the offered shipped ones.
    default_language: str = "en"
    languages: tuple[str, ...] = Field(SHIPPED, min_length=1)

    @model_validator(mode="after")
    def _shipped(self) -> UiSettings:
        unknown = [lang for lang in self.languages if lang not in SHIPPED]
        if unknown:
            raise ValueError(
                f"languages: {', '.join(unknown)} not shipped (shipped: {', '.join(SHIPPED)})"
            )
        if len(set(self.languages)) != len(self.languages):
            raise ValueError("languages: each language once")
        if self.default_language not in self.languages:
            raise ValueError(f"default_language {self.default_language!r} is not in languages")
        return self


class AuditSettings(_Model):
    """The audit stream (docs/audit-events.md): one JSON event per security-relevant fact."""

    enabled: bool = True
    # The caller's address in clear on the events that carry one (else only its tag).
    addresses: bool = True
    # How often each process looks for approvals whose browser never came back.
    sweep_seconds: int = Field(30, ge=1, le=3600)


class TracingSettings(_Model):
    """OpenTelemetry spans exported over OTLP/HTTP (the ``otel`` extra); off by default."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    service_name: str = Field("idenfy-stepup", min_length=1, max_length=128)
    sampling_ratio: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL")
        return value


class Settings(_Model):
    issuer: str
    server: ServerSettings = ServerSettings()
    redis: RedisSettings = RedisSettings()
    keys: KeysSettings = KeysSettings()
    cookies: CookieSettings = CookieSettings()
    idenfy: IdenfySettings
    directory: DirectorySettings = DirectorySettings()
    acr: AcrSettings = AcrSettings()
    clients: tuple[ClientSettings, ...] = ()
    errors: dict[str, ErrorOverride] = Field(default_factory=dict)
    challenge: ChallengeSettings = ChallengeSettings()
    par: ParSettings = ParSettings()
    ui: UiSettings = UiSettings()
    authorization_details: AuthorizationDetailsSettings = AuthorizationDetailsSettings()
    audit: AuditSettings = AuditSettings()
    tracing: TracingSettings = TracingSettings()
    _limits_off: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("clients")
    @classmethod
    def _conformance_only_in_simulator(
        cls, clients: tuple[ClientSettings, ...], info: ValidationInfo
    ) -> tuple[ClientSettings, ...]:
        # A fixed subject steps up that person for anyone who asks: only against the simulator.
        idenfy = info.data.get("idenfy")
        if not isinstance(idenfy, IdenfySettings):
            return clients  # idenfy itself is invalid: that error is reported
        for i, client in enumerate(clients):
            if client.conformance_subject is not None and idenfy.mode != "simulator":
                raise ValueError(
                    f"clients[{i}].conformance_subject is allowed only with idenfy.mode: "
                    "simulator (it steps up a fixed person for whoever asks)"
                )
        return clients

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        parts = urlsplit(self.issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("issuer must be an absolute http(s) URL")
        if parts.query or parts.fragment or self.issuer.endswith("/"):
            raise ValueError("issuer must have no query, fragment or trailing slash")
        ids = [c.client_id for c in self.clients]
        if len(set(ids)) != len(ids):
            raise ValueError("clients: every client_id must be unique")
        unknown = sorted(set(self.errors) - set(OUTCOME_NAMES))
        if unknown:
            raise ValueError(f"errors: unknown outcome(s) {', '.join(unknown)}")
        types = self.authorization_details.types
        for i, client in enumerate(self.clients):
            missing = [t for t in client.authorization_details_types if t not in types]
            if missing:
                raise ValueError(
                    f"clients[{i}].authorization_details_types: {', '.join(missing)} is not "
                    "a type under authorization_details.types"
                )
        return self._simulator_limits()

    def _simulator_limits(self) -> Settings:
        """In simulator mode a limit is on only where the file sets it: integrators script every
        failReason in a row, and the sixth must not turn into ``rate_limited``."""
        if self.idenfy.mode != "simulator":
            return self
        limits = self.challenge.limits
        unset = set(LimitSettings.model_fields) - limits.model_fields_set
        if not unset:
            return self
        off = limits.model_copy(update=dict.fromkeys(unset))
        challenge = self.challenge.model_copy(update={"limits": off})
        settings = self.model_copy(update={"challenge": challenge})
        settings._limits_off = tuple(sorted(unset))
        return settings

    def limits_defaulted_off(self) -> tuple[str, ...]:
        """The limits simulator mode switched off because the file does not set them."""
        return self._limits_off

    def client(self, client_id: str) -> ClientSettings | None:
        return next((c for c in self.clients if c.client_id == client_id), None)

    def issuer_is_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.issuer).hostname or "")

    def cookie_secure(self) -> bool:
        if self.cookies.secure == "auto":
            return urlsplit(self.issuer).scheme == "https" or not self.issuer_is_loopback()
        return self.cookies.secure


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
