"""What the accounts feature keeps for a running server: signers, throttle, cookie policy, mail sender."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from model_go.accounts.crypto import CsrfSigner
from model_go.accounts.sessions import CookiePolicy
from model_go.accounts.throttle import ActionLimits, FailureStore, LoginThrottle, RateLimits
from model_go.mail.sender import OutboxSender
from model_go.passwords import hash_password
from model_go.settings import Settings


@dataclass
class AccountsRuntime:
    settings: Settings
    csrf: CsrfSigner
    throttle: LoginThrottle
    mail_limits: ActionLimits  # sign-ups and reset mails per address and per recipient
    cookies: CookiePolicy
    sender: OutboxSender
    # verified against when the user is unknown, so both answers cost one argon2 verify
    dummy_hash: str

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.settings.session_ttl_hours)

    async def limit_mail(self, ip: str, to: str, action: str) -> None:
        """Count one mail-sending request (a sign-up, a reset) against its client and its recipient;
        RateLimited when either has had enough. The same answer whether or not an account exists."""
        s = self.settings
        await self.mail_limits.hit(
            [(f"ip:{ip}", s.mail_max_per_ip), (f"to:{to}", s.mail_max_per_address)],
            f"Too many {action} requests.",
            "mail_rate_limited",
        )

    @property
    def public_url(self) -> str:
        return self.settings.public_url


def _failure_store(settings: Settings) -> FailureStore | None:
    """Sign-in failures shared through Redis when replicas share one (MODELGO_REDIS_URL)."""
    if not settings.redis_url:
        return None  # this process's memory
    from model_go.accounts.throttle_redis import RedisFailures  # the redis client only when used

    return RedisFailures(
        settings.redis_url,
        settings.redis_prefix,
        settings.login_throttle_window_seconds,
        keep_addresses_seconds=settings.usage_retention_days * 86_400,
    )


def _mail_limits(settings: Settings) -> ActionLimits:
    """Mail-sending limits shared through Redis when replicas share one, else in this process."""
    if not settings.redis_url:
        return RateLimits(settings.mail_rate_window_seconds)
    from model_go.accounts.throttle_redis import RedisRateLimits

    return RedisRateLimits(settings.redis_url, settings.redis_prefix, settings.mail_rate_window_seconds)


async def build(settings: Settings, master: bytes, sender: OutboxSender) -> AccountsRuntime:
    return AccountsRuntime(
        settings=settings,
        csrf=CsrfSigner(master),
        throttle=LoginThrottle(
            per_account=settings.login_max_failures_per_account,
            per_ip=settings.login_max_failures_per_ip,
            window_seconds=settings.login_throttle_window_seconds,
            per_account_global=settings.login_max_failures_per_account_global,
            store=_failure_store(settings),
        ),
        mail_limits=_mail_limits(settings),
        cookies=CookiePolicy(insecure=settings.insecure_cookies, max_age=settings.session_ttl_hours * 3600),
        sender=sender,
        dummy_hash=await asyncio.to_thread(hash_password, "not-a-password-" + "x" * 16),
    )
