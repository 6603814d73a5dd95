"""Runtime settings, read once from the environment.

Every resource name (tables, queues, bucket, KMS key) arrives through environment variables set by
`.chalice/config.json` (cloud) or the local stack, so the same code runs in Lambda, in the local stack and
in tests. `reset_settings()` exists for tests that change the environment.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """The process's settings (`load_settings`: the environment, then these defaults); immutable, read once per
    process by `get_settings()`. A class docstring also spares `dataclass` building one from the signature of
    its 30-field `__init__` on every cold start."""
    stage: str = "local"
    region: str = "us-east-1"
    table_prefix: str = "mailbridge-local-"
    sync_queue_url: str = ""
    check_queue_url: str = ""          # scheduled jobs' idle check (sync/check.py); empty → straight to the worker
    events_queue_url: str = ""
    raw_bucket: str = ""
    kms_key_id: str = ""
    operator_key_sha256: str = ""
    signing_key: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    max_message_bytes: int = 50 * 1024 * 1024
    page_raw_bytes: int = 32 * 1024 * 1024      # raw mail the sync engine holds at once (docs/architecture.md)
    s3_put_concurrency: int = 8                 # parallel raw-object PUTs per page
    data_key_cache_seconds: int = 300           # unwrapped secrets keys kept in the process (security/tenant_keys.py)
    auth_cache_seconds: int = 30                # verified API keys kept in the API process (api/auth_cache.py)
    allow_insecure_mail_transport: bool = False
    ssrf_allowed_networks: tuple[str, ...] = field(default_factory=tuple)
    worker_timeout_seconds: int = 300
    refresh_interval_seconds: int = 300
    idle_heartbeat_seconds: int = 21600          # idle checks write state at most this often (sync/idle_check.py)
    check_concurrency: int = 10                 # records of one check-queue batch checked at once (sync/check.py)
    scheduler_jitter_seconds: int = 0
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    gmail_api_root: str = "https://gmail.googleapis.com/"
    google_certs_uri: str = "https://www.googleapis.com/oauth2/v1/certs"
    # Microsoft 365 (issue 10): identity platform host and Graph root; a fake on loopback in tests/demo.
    microsoft_authority_host: str = "https://login.microsoftonline.com"
    graph_api_root: str = "https://graph.microsoft.com/v1.0"

    def table_name(self, suffix: str) -> str:
        return f"{self.table_prefix}{suffix}"

    def public_url(self, path: str) -> str:
        """The absolute URL of `path` ("/v1/…") as clients reach this API: `MAILBRIDGE_PUBLIC_BASE_URL` + path.
        Every URL the service hands out is built here (201 `Location`, attachment `download_url` and the `cid:`
        images of a message's HTML, OAuth redirect URIs, the push endpoints registered with Google and Microsoft,
        the OpenAPI `servers` entry and the reference's `$B`): API Gateway serves a stage under a path prefix
        (`https://x.execute-api.<region>.amazonaws.com/api/v1/…`), which only the configured base URL knows — a
        bare `/v1/…` path, or the request's own path, would lose it behind a custom domain's base-path mapping."""
        return self.public_base_url + path


INSECURE_URL_STAGES = ("local", "test")


def _endpoint(env: dict[str, str], name: str, default: str, stage: str, *, trailing_slash: bool = False) -> str:
    """A provider endpoint URL from the environment: https only, except http:// in the local/test stages
    (where the stack is pointed at fakes on loopback)."""
    value = env.get(name) or default
    scheme = value.split(":", 1)[0].lower()
    if scheme != "https" and not (scheme == "http" and stage in INSECURE_URL_STAGES):
        raise ValueError(f"{name} must be an https:// URL (http:// only in the local stage): {value!r}")
    if trailing_slash and not value.endswith("/"):
        value += "/"
    return value


def _public_base_url(env: dict[str, str], stage: str) -> str:
    """`MAILBRIDGE_PUBLIC_BASE_URL` without trailing slashes (paths start with one: `Settings.public_url`). An
    absolute URL with a host and no query or fragment — every URL handed out, including the push endpoints
    Google and Microsoft call and the OAuth redirect URIs, is built on it; https, except http:// in the local/test
    stages, which alone may leave it unset (the local API on loopback)."""
    name = "MAILBRIDGE_PUBLIC_BASE_URL"
    insecure = stage in INSECURE_URL_STAGES
    value = env.get(name, "http://127.0.0.1:8000" if insecure else "")
    parts = urlsplit(value)
    if parts.scheme not in (("https", "http") if insecure else ("https",)) or not parts.hostname \
            or parts.query or parts.fragment:
        raise ValueError(f"{name} must be the API's absolute https:// URL, stage prefix included, without query or "
                         f"fragment (http:// only in the local stage): {value!r}")
    return value.rstrip("/")


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    stage = env.get("MAILBRIDGE_STAGE", "local")
    defaults = Settings()
    return Settings(
        stage=stage,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        table_prefix=env.get("MAILBRIDGE_TABLE_PREFIX", "mailbridge-local-"),
        sync_queue_url=env.get("MAILBRIDGE_SYNC_QUEUE_URL", ""),
        check_queue_url=env.get("MAILBRIDGE_CHECK_QUEUE_URL", ""),
        events_queue_url=env.get("MAILBRIDGE_EVENTS_QUEUE_URL", ""),
        raw_bucket=env.get("MAILBRIDGE_RAW_BUCKET", ""),
        kms_key_id=env.get("MAILBRIDGE_KMS_KEY_ID", ""),
        operator_key_sha256=env.get("MAILBRIDGE_OPERATOR_KEY_SHA256", "").lower(),
        signing_key=env.get("MAILBRIDGE_SIGNING_KEY", ""),
        public_base_url=_public_base_url(env, stage),
        max_body_bytes=int(env.get("MAILBRIDGE_MAX_BODY_BYTES", "1048576")),
        max_message_bytes=int(env.get("MAILBRIDGE_MAX_MESSAGE_BYTES", str(50 * 1024 * 1024))),
        page_raw_bytes=int(env.get("MAILBRIDGE_PAGE_RAW_BYTES", str(defaults.page_raw_bytes))),
        s3_put_concurrency=max(1, int(env.get("MAILBRIDGE_S3_PUT_CONCURRENCY", str(defaults.s3_put_concurrency)))),
        data_key_cache_seconds=int(env.get("MAILBRIDGE_DATA_KEY_CACHE_SECONDS",
                                           str(defaults.data_key_cache_seconds))),
        auth_cache_seconds=int(env.get("MAILBRIDGE_AUTH_CACHE_SECONDS", str(defaults.auth_cache_seconds))),
        allow_insecure_mail_transport=_bool(env.get("MAILBRIDGE_ALLOW_INSECURE_MAIL_TRANSPORT")),
        ssrf_allowed_networks=_csv(env.get("MAILBRIDGE_SSRF_ALLOWED_NETWORKS")),
        worker_timeout_seconds=int(env.get("MAILBRIDGE_WORKER_TIMEOUT_SECONDS", "300")),
        refresh_interval_seconds=int(env.get("MAILBRIDGE_REFRESH_INTERVAL_SECONDS", "300")),
        idle_heartbeat_seconds=int(env.get("MAILBRIDGE_IDLE_HEARTBEAT_SECONDS",
                                           str(defaults.idle_heartbeat_seconds))),
        check_concurrency=max(1, int(env.get("MAILBRIDGE_CHECK_CONCURRENCY", str(defaults.check_concurrency)))),
        scheduler_jitter_seconds=int(env.get("MAILBRIDGE_SCHEDULER_JITTER_SECONDS", "0") or 0),
        google_auth_uri=_endpoint(env, "MAILBRIDGE_GOOGLE_AUTH_URI", defaults.google_auth_uri, stage),
        google_token_uri=_endpoint(env, "MAILBRIDGE_GOOGLE_TOKEN_URI", defaults.google_token_uri, stage),
        gmail_api_root=_endpoint(env, "MAILBRIDGE_GMAIL_API_ROOT", defaults.gmail_api_root, stage,
                                 trailing_slash=True),
        google_certs_uri=_endpoint(env, "MAILBRIDGE_GOOGLE_CERTS_URI", defaults.google_certs_uri, stage),
        microsoft_authority_host=(env.get("MAILBRIDGE_MICROSOFT_AUTHORITY_HOST")
                                  or "https://login.microsoftonline.com").rstrip("/"),
        graph_api_root=(env.get("MAILBRIDGE_GRAPH_API_ROOT") or "https://graph.microsoft.com/v1.0").rstrip("/"),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()
