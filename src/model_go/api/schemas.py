"""Request and response bodies of /api. Requests refuse unknown fields (nobody can set is_admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -----------------------------------------------------------------------------------


class RegisterIn(Strict):
    email: str = Field(max_length=254)
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    age_confirmed: StrictBool = Field(description="Must be true: the person confirms they are 18 or older.")
    accept_policy_version: str = Field(max_length=32, description="The current version from GET /api/policy.")


class TokenIn(Strict):
    token: str = Field(max_length=256)


class LoginIn(Strict):
    login: str = Field(max_length=254, description="Email address or username.")
    password: str = Field(max_length=1024)


class ResetIn(Strict):
    email: str = Field(max_length=254)


class ResetConfirmIn(Strict):
    token: str = Field(max_length=256)
    password: str = Field(max_length=1024)


class ProfileIn(Strict):
    username: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=254)


class PasswordChangeIn(Strict):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class PasswordIn(Strict):
    password: str = Field(max_length=1024)


class ConsentIn(Strict):
    marketing_emails: StrictBool


class PolicyAcceptIn(Strict):
    version: str = Field(max_length=32)


BUDGET_USD = 'Spend limit in USD per budget_period, as a string ("5.00"); null: none.'
BUDGET_PERIOD = "day, week or month (UTC; weeks start on Monday)."
LIFETIME_USD = 'Spend limit in USD over the key\'s whole life, as a string ("20.00"); null: none.'


RPM = "Requests per minute (null: no limit of its own)."
TPM = "Tokens per minute, prompt and output (null: no limit of its own)."
MAX_CONCURRENCY = "Requests at a time (null: no limit of its own)."


class LimitsIn(Strict):
    """Only the fields sent change; null removes a limit."""

    rpm: StrictInt | None = Field(default=None, description=RPM)
    tpm: StrictInt | None = Field(default=None, description=TPM)
    max_concurrency: StrictInt | None = Field(default=None, description=MAX_CONCURRENCY)


class UserTierIn(Strict):
    tier: str = Field(
        max_length=32, description='"default", or a tier made with PUT /api/admin/tiers/{name}.'
    )


class KeyIn(LimitsIn):
    name: str = Field(default="", max_length=128)
    models: list[str] | None = Field(default=None, max_length=100, description="Allowed models; null = all.")
    expires_at: datetime | None = None
    budget_usd: str | None = Field(default=None, max_length=32, description=BUDGET_USD)
    budget_period: str | None = Field(default=None, max_length=16, description=BUDGET_PERIOD)
    lifetime_budget_usd: str | None = Field(default=None, max_length=32, description=LIFETIME_USD)


class KeyBudgetIn(Strict):
    """Only the fields sent change; null removes a budget (a null budget_usd removes its period too)."""

    budget_usd: str | None = Field(default=None, max_length=32, description=BUDGET_USD)
    budget_period: str | None = Field(default=None, max_length=16, description=BUDGET_PERIOD)
    lifetime_budget_usd: str | None = Field(default=None, max_length=32, description=LIFETIME_USD)


class TicketIn(Strict):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=20_000)


class MessageIn(Strict):
    body: str = Field(min_length=1, max_length=20_000)


class CreditIn(Strict):
    amount_usd: str = Field(max_length=32, description='USD as a string, e.g. "12.50".')
    note: str | None = Field(default=None, max_length=255)


class ChannelIn(Strict):
    name: str = Field(max_length=128)
    provider: str = Field(max_length=32)
    base_url: str = Field(default="", max_length=2048)
    models: list[str] = Field(min_length=1, max_length=500)
    model_map: dict[str, str] | None = None
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    weight: int = Field(default=1, ge=1, le=1_000_000)
    api_key: str | None = Field(default=None, max_length=4096)
    config: dict[str, Any] | None = Field(
        default=None,
        max_length=50,
        description='Channel options, e.g. {"api_version": "2024-10-21", "default_max_tokens": 8192}.',
    )


class ChannelPatch(Strict):
    base_url: str | None = Field(default=None, max_length=2048)
    models: list[str] | None = Field(default=None, min_length=1, max_length=500)
    model_map: dict[str, str] | None = None
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    weight: int | None = Field(default=None, ge=1, le=1_000_000)
    api_key: str | None = Field(default=None, max_length=4096)
    enabled: StrictBool | None = None


class PriceIn(Strict):
    input: str | None = Field(
        default=None, max_length=32, description='USD per 1M input tokens, e.g. "2.50".'
    )
    output: str | None = Field(default=None, max_length=32, description="USD per 1M output tokens.")
    cached_input: str | None = Field(default=None, max_length=32, description="Defaults to the input price.")
    cache_write: str | None = Field(
        default=None,
        max_length=32,
        description="USD per 1M tokens written to a prompt cache; defaults to input.",
    )
    request: str | None = Field(default=None, max_length=32, description="USD per billed request.")
    image: str | None = Field(default=None, max_length=32, description="USD per image part in a prompt.")
    free: bool = Field(default=False, description="Free on purpose: no prices may be given.")
    max_output_tokens: int | None = Field(default=None, description="Overrides the catalogue's max output.")
    context_length: int | None = Field(default=None, description="Overrides the catalogue's context window.")


class PolicyIn(Strict):
    version: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    effective_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    text: str = Field(min_length=1, max_length=200_000)


# -- responses ----------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: int
    username: str
    email: str | None
    pending_email: str | None
    is_admin: bool
    balance_micros: int
    balance_usd: str
    created_at: datetime
    email_verified: bool
    marketing_emails: bool
    policy_version_accepted: str | None
    policy_update_required: bool


class MeOut(UserOut):
    csrf_token: str | None = Field(description="Send as X-CSRF-Token; null when called with an API key.")


class UserEnvelope(BaseModel):
    user: UserOut


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str


class MessageOut(BaseModel):
    message: str


class LimitsOut(BaseModel):
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None


class TierOut(BaseModel):
    name: str
    limits: LimitsOut
    users: int


class UserLimitsOut(BaseModel):
    user_id: int
    username: str
    tier: str
    own: LimitsOut = Field(description="The user's own limits, over the tier's where set.")
    tier_limits: LimitsOut


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    models: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    budget_micros: int | None
    budget_period: str | None
    lifetime_budget_micros: int | None
    limits: LimitsOut = Field(description="The key's own rate limits; its user's apply as well.")


class NewKeyOut(KeyOut):
    secret: str = Field(description="The API key itself. Shown only in this response.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int


class ModelSeries(BaseModel):
    model: str
    requests: list[int]
    spend_micros: list[int]


class SummaryOut(BaseModel):
    days: list[str]
    models: list[ModelSeries]
    total_spend_micros: int
    total_requests: int


class BillingOut(BaseModel):
    balance_micros: int
    balance_usd: str
    ledger: Page[dict[str, Any]]


class PolicyVersionOut(BaseModel):
    version: str
    effective_date: str
    published_at: datetime


class PolicyCurrentOut(BaseModel):
    version: str
    effective_date: str
    text: str


class PolicyOut(BaseModel):
    current: PolicyCurrentOut
    versions: list[PolicyVersionOut]
