"""Process settings, read from the environment with the MODELGO_ prefix."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_go.wire.client_ip import TrustedProxies

SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Every knob an operator can turn. Documented in README.md (a test keeps the two in sync)."""

    model_config = SettingsConfigDict(env_prefix="MODELGO_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # -- server-wide limits: the routes outside /v1, request heads, slow clients, open connections --
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    body_read_timeout_seconds: float = Field(default=60.0, gt=0)
    idle_connection_timeout_seconds: int = Field(default=5, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    # how often a running server checks the database for changes made by the CLI or another replica
    snapshot_poll_seconds: float = Field(default=0.5, gt=0, le=60.0)
    usage_flush_seconds: float = Field(default=0.5, gt=0, le=1.0)
    usage_flush_rows: int = Field(default=1000, ge=1)
    # unwritten usage rows (the database unreachable) beyond which /v1 refuses with 503 usage_backlog
    usage_max_pending_rows: int = Field(default=100_000, ge=10)
    keepalive_seconds: float = Field(default=15.0, gt=0)
    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    upstream_first_byte_timeout: float = Field(default=300.0, gt=0)
    upstream_idle_timeout: float = Field(default=300.0, gt=0)
    upstream_total_timeout: float = Field(default=1800.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    default_max_output_tokens: int = Field(default=4096, ge=1)
    min_output_tokens: int = Field(default=256, ge=1)
    idempotency_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    # the limits of a tier that does not set its own, per user (0: none); relay/limits.py
    default_rpm: int = Field(default=0, ge=0)
    default_tpm: int = Field(default=0, ge=0)
    default_concurrency: int = Field(default=0, ge=0)
    # comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (empty: none)
    trusted_proxies: str = ""
    # balances, rate-limit counters and sign-in failures shared by every replica
    # (billing/redis_ledger.py, relay/redis_limits.py, accounts/throttle_redis.py); unset: in this process
    redis_url: str | None = None
    redis_prefix: str = Field(default="modelgo:", min_length=1, max_length=64)
    # a replica silent this long is taken for dead: its holds on balances are released
    replica_dead_seconds: float = Field(default=10.0, ge=2.0, le=600.0)
    log_level: str = "INFO"
    # json | text; unset: JSON when stderr is not a terminal (observability/logs.py)
    log_format: Literal["json", "text"] | None = None
    access_log: bool = True
    # /metrics: on the public port to `Authorization: Bearer <token>`, and/or on an internal port
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    demo: bool = True
    # migrate the schema when the server or a command opens the database; false: only `model-go
    # migrate` does, and the rest refuse a schema that is not current (rolling out replicas)
    auto_migrate: bool = True
    # SIGTERM: stop accepting, let requests in flight (streams too) finish this long, then cut them
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=3600)
    # -- accounts, mail, retention --
    # plain-http localhost development only: cookie `session` without Secure instead of `__Host-session`
    insecure_cookies: bool = False
    public_url: str = "http://127.0.0.1:8080"
    session_ttl_hours: int = Field(default=168, ge=1, le=24 * 90)
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "model-go <no-reply@localhost>"
    smtp_starttls: bool = True
    smtp_timeout: float = Field(default=30.0, gt=0)
    mail_poll_seconds: float = Field(default=5.0, gt=0)
    # the privacy policy promises at most 90 days: larger values are refused at start
    usage_retention_days: int = Field(default=90, ge=1, le=90)
    retention_interval_seconds: float = Field(default=86400.0, gt=0)
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_ip: int = Field(default=30, ge=1)
    login_throttle_window_seconds: int = Field(default=900, ge=1)
    # failures from all addresses before an account locks for addresses that never signed in to it
    login_max_failures_per_account_global: int = Field(default=50, ge=1)
    # sign-ups and password-reset requests per client address, and mails per recipient, per window
    mail_max_per_ip: int = Field(default=10, ge=1)
    mail_max_per_address: int = Field(default=3, ge=1)
    mail_rate_window_seconds: int = Field(default=3600, ge=1)
    # queued mail not sent within this time is dropped (its links would have expired anyway)
    mail_unsent_ttl_hours: int = Field(default=24, ge=1, le=24 * 7)

    # -- payments --
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    topup_min_usd: int = Field(default=5, ge=1, le=1_000_000)
    topup_max_usd: int = Field(default=500, ge=1, le=1_000_000)
    # one mail when a balance falls below this (users may set their own); 0: no mail unless they do
    low_balance_usd: Decimal = Field(default=Decimal(0), ge=0, le=1_000_000, decimal_places=6)
    low_balance_check_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _poll_without_notices(self) -> Settings:
        # without Redis the poll is the only way a revoked key leaves a running server: at most 1 s
        if self.snapshot_poll_seconds > 1.0 and not self.redis_url:
            raise ValueError(
                "MODELGO_SNAPSHOT_POLL_SECONDS above 1 needs MODELGO_REDIS_URL, whose notices announce"
                " changes at once; without it a revoked key would work for that long"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        TrustedProxies.parse(value)  # refused at start, naming the entry that is not a CIDR
        return value

    @property
    def low_balance_micros(self) -> int:
        return int(self.low_balance_usd * 1_000_000)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'model-go.db').resolve()}"

    def master_secret(self) -> bytes:
        """The server secret: from MODELGO_SECRET_KEY, else generated once into the data dir (0600)."""
        if self.secret_key is not None:
            value = self.secret_key.get_secret_value()
            if len(value) < MIN_SECRET_LENGTH:
                raise ValueError(f"MODELGO_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
            return value.encode()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.data_dir / SECRET_FILE_NAME
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        generated = secrets.token_urlsafe(48).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generated + b"\n")
        return generated
