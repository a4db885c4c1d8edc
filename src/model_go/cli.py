"""The `model-go` command. Every command works while the server runs, on the same database; the
server notices changes within a second (they bump the configuration version)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlparse

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import micros_to_usd, usd_to_micros
from model_go.providers import REGISTRY
from model_go.security import KeyRing
from model_go.settings import Settings
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate
from model_go.storage.tables import USAGE_VIEW_FIELDS

T = TypeVar("T")

app = typer.Typer(
    help="model-go: one API, one key, one balance in front of many AI providers.",
    no_args_is_help=True,
    add_completion=False,
)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
credit_app = typer.Typer(help="Add credit to a balance.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
channel_app = typer.Typer(help="Manage upstream channels.", no_args_is_help=True)
price_app = typer.Typer(help="Manage model prices (USD per 1M tokens).", no_args_is_help=True)
usage_app = typer.Typer(help="Read usage logs.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(credit_app, name="credit")
app.add_typer(key_app, name="key")
app.add_typer(channel_app, name="channel")
app.add_typer(price_app, name="price")
app.add_typer(usage_app, name="usage")
retention_app = typer.Typer(help="Purge usage logs past the retention limit.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")

out = Console()
err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def run_db(work: Callable[[AsyncConnection, KeyRing], Awaitable[T]], settings: Settings | None = None) -> T:
    """Open the database (migrating it if needed), run `work` in one transaction, close."""
    settings = settings or Settings()

    async def main() -> T:
        engine = make_engine(settings.resolved_database_url(), pool=False)
        try:
            await migrate(engine)
            keyring = KeyRing(settings.master_secret())
            async with engine.begin() as conn:
                return await work(conn, keyring)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except repo.RepoError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None


def _models(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [m.strip() for m in text.split(",") if m.strip()]


def _usd(text: str, what: str) -> int:
    try:
        return usd_to_micros(text)
    except ValueError as exc:
        raise fail(f"{what}: {exc}") from None


# -- serve --------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (MODELGO_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (MODELGO_PORT).")] = None,
) -> None:
    """Migrate the database and serve the API."""
    import uvicorn

    from model_go.app import create_server_app
    from model_go.bootstrap import ensure_demo
    from model_go.guard_http import ConnectionLimits, guarded_protocol

    logging.getLogger("alembic").setLevel(logging.WARNING)

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = Settings(**overrides)
    # documented logging switches: skip the caller, thread and process lookups on every record
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    demo_key = run_db(ensure_demo, settings) if settings.demo else None
    if demo_key:
        out.print(
            "[bold]First start:[/bold] created user 'demo' with $5.00 of credit, the built-in "
            "'demo' model and this API key (shown once, store it now):",
            highlight=False,
        )
        out.print(demo_key, highlight=False, soft_wrap=True)
    out.print(f"model-go listening on http://{settings.host}:{settings.port}", highlight=False)
    uvicorn.run(
        create_server_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,  # it would print query strings; the relay logs its own redacted line
        log_config=None,
        loop="uvloop",
        # httptools plus the limits uvicorn lacks (head size, head and body deadlines, a JSON 503 at
        # the connection cap); no websocket routes, so no upgrades either
        http=guarded_protocol(ConnectionLimits.from_settings(settings)),
        ws="none",
        timeout_keep_alive=settings.idle_connection_timeout_seconds,
        timeout_graceful_shutdown=30,
        # the client address is the socket peer: uvicorn would otherwise take X-Forwarded-For from
        # local peers, which lets any local client reset per-IP login throttling and forge usage IPs
        proxy_headers=False,
    )


# -- users and money ----------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    username: str,
    email: Annotated[str, typer.Option(help="The user's email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an operator.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a password from stdin.")
    ] = False,
) -> None:
    """Create a user."""
    password_hash = None
    if password_stdin:
        from model_go.passwords import hash_password

        password = sys.stdin.readline().rstrip("\n")
        try:
            password_hash = hash_password(password)
        except ValueError as exc:
            raise fail(str(exc)) from None

    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        return await repo.create_user(
            conn, username, email=email, is_admin=admin, password_hash=password_hash
        )

    user_id = run_db(work)
    out.print(f"created user {username} (id {user_id}{', admin' if admin else ''})", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """List users with their balances."""
    from sqlalchemy import select

    from model_go.storage.tables import users

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        return list((await conn.execute(select(users).order_by(users.c.id))).all())

    table = Table("id", "username", "email", "role", "status", "balance USD")
    for row in run_db(work):
        table.add_row(
            str(row.id),
            row.username,
            row.email or "",
            "admin" if row.is_admin else "customer",
            "disabled" if row.disabled else "active",
            micros_to_usd(row.balance_micros),
        )
    out.print(table)


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user: every key stops working within a second."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        user = await repo.user_by_username(conn, username)
        await repo.set_user_disabled(conn, user.id, True)

    run_db(work)
    out.print(f"disabled user {username}", highlight=False)


@user_app.command("enable")
def user_enable(username: str) -> None:
    """Enable a disabled user."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        user = await repo.user_by_username(conn, username)
        await repo.set_user_disabled(conn, user.id, False)

    run_db(work)
    out.print(f"enabled user {username}", highlight=False)


@credit_app.command("add")
def credit_add(
    username: str,
    amount_usd: Annotated[str, typer.Argument(help="Amount in USD, e.g. 10 or 12.50.")],
    note: Annotated[str | None, typer.Option(help="A note kept on the ledger entry.")] = None,
) -> None:
    """Add credit to a user's balance."""
    amount = _usd(amount_usd, "AMOUNT_USD")
    if amount <= 0:
        raise fail("AMOUNT_USD must be positive")

    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        user = await repo.user_by_username(conn, username)
        return await repo.add_credit(conn, user.id, amount, note=note)

    new_balance = run_db(work)
    out.print(
        f"credited {micros_to_usd(amount)} USD to {username}; balance {micros_to_usd(new_balance)} USD",
        highlight=False,
    )


@app.command()
def balance(username: str) -> None:
    """Print a user's balance in USD."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        user = await repo.user_by_username(conn, username)
        return int(user.balance_micros)

    out.print(micros_to_usd(run_db(work)), highlight=False)


# -- keys ---------------------------------------------------------------------------------------


@key_app.command("add")
def key_add(
    username: str,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    models: Annotated[str | None, typer.Option(help="Comma-separated models this key may use.")] = None,
) -> None:
    """Create an API key. The secret is printed once, alone on the last line."""

    async def work(conn: AsyncConnection, keyring: KeyRing) -> repo.NewKey:
        user = await repo.user_by_username(conn, username)
        return await repo.create_key(conn, keyring, user.id, name=name, models=_models(models))

    new = run_db(work)
    err.print(f"created key {new.id} for {username}; the secret is shown only now:", highlight=False)
    typer.echo(new.secret)


@key_app.command("list")
def key_list(username: str) -> None:
    """List a user's keys (prefixes only: secrets are never stored)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        user = await repo.user_by_username(conn, username)
        return list(await repo.list_keys(conn, user.id))

    table = Table("id", "name", "prefix", "models", "created", "status")
    for row in run_db(work):
        status = "revoked" if row.revoked_at else "active"
        models = ", ".join(orjson.loads(row.models)) if row.models else "all"
        table.add_row(
            str(row.id),
            row.name,
            row.prefix + "…",
            models,
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            status,
        )
    out.print(table)


@key_app.command("revoke")
def key_revoke(key_id: int) -> None:
    """Revoke a key; the running server refuses it within a second."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> bool:
        return await repo.revoke_key(conn, key_id)

    if not run_db(work):
        raise fail(f"no active key with id {key_id}")
    out.print(f"revoked key {key_id}", highlight=False)


# -- channels -----------------------------------------------------------------------------------


def _model_map(pairs: list[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        public, sep, upstream = pair.partition("=")
        if not sep or not public.strip() or not upstream.strip():
            raise fail(f"--model-map takes PUBLIC=UPSTREAM, got {pair!r}")
        result[public.strip()] = upstream.strip()
    return result


@channel_app.command("add")
def channel_add(
    name: str,
    provider: Annotated[str, typer.Option(help=f"One of: {', '.join(sorted(REGISTRY))}.")],
    models: Annotated[str, typer.Option(help="Comma-separated public model names it serves.")],
    base_url: Annotated[str, typer.Option(help="Upstream base URL, e.g. https://api.openai.com/v1.")] = "",
    priority: Annotated[int, typer.Option(help="Higher tiers are tried first.")] = 0,
    weight: Annotated[int, typer.Option(help="Share of traffic inside its priority tier.")] = 1,
    model_map: Annotated[
        list[str] | None, typer.Option(help="PUBLIC=UPSTREAM model name (repeatable).")
    ] = None,
    api_key_stdin: Annotated[
        bool, typer.Option("--api-key-stdin", help="Read the upstream key from stdin.")
    ] = False,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            help="KEY=VALUE channel option, VALUE read as JSON if it parses (repeatable), e.g. "
            'api_version=2024-10-21, deployments=\'{"gpt-4o": "prod-4o"}\', default_max_tokens=8192.',
        ),
    ] = None,
) -> None:
    """Add an upstream channel. Its key is encrypted at rest. For a vendor preset (deepseek, groq,
    ollama, ...) --base-url defaults to the vendor's URL."""
    from model_go.providers.presets import PRESETS

    if provider not in REGISTRY:
        raise fail(f"unknown provider {provider!r}; known: {', '.join(sorted(REGISTRY))}")
    preset = PRESETS.get(provider)
    base_url = base_url or (preset.base_url if preset else "")
    if not REGISTRY[provider].local:
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise fail("--base-url must be an http(s) URL, e.g. https://api.openai.com/v1")
    if preset and preset.needs_key and not api_key_stdin:
        raise fail(f"provider {provider} needs an API key: pass it on stdin with --api-key-stdin")
    options: dict[str, Any] = {}
    for item in config or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"--config takes KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = orjson.loads(value)
        except orjson.JSONDecodeError:
            options[key.strip()] = value
    api_key = sys.stdin.readline().strip() if api_key_stdin else None
    if api_key_stdin and not api_key:
        raise fail("--api-key-stdin given but stdin was empty")
    model_list = _models(models) or []
    mapping = _model_map(model_map)

    async def work(conn: AsyncConnection, keyring: KeyRing) -> tuple[int, list[str]]:
        channel_id = await repo.add_channel(
            conn,
            keyring,
            name=name,
            provider=provider,
            base_url=base_url,
            models=model_list,
            model_map=mapping,
            priority=priority,
            weight=weight,
            api_key=api_key,
            config=options,
        )
        priced = {row.model for row in await repo.list_prices(conn)}
        return channel_id, [m for m in model_list if m not in priced]

    channel_id, unpriced = run_db(work)
    out.print(f"added channel {name} (id {channel_id}, provider {provider})", highlight=False)
    if unpriced:
        err.print(
            f"[yellow]note:[/yellow] no price set for {', '.join(unpriced)}; requests for them are "
            "refused until `model-go price set MODEL --input X --output Y`",
            highlight=False,
        )


def _channel_health(row: Any, now: datetime) -> str:
    if not row.enabled:
        return f"disabled: {row.disabled_reason or 'by operator'}"
    if row.cooldown_until is not None and row.cooldown_until > now:
        return f"cooling down until {row.cooldown_until:%Y-%m-%d %H:%M:%S} UTC"
    return "ok"


@channel_app.command("list")
def channel_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List channels with their health (keys are never shown). Cooldowns and errors are as a server
    last reported them."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        return list(await repo.list_channels(conn))

    table = Table(
        "id", "name", "provider", "base url", "models", "priority", "weight", "health", "last error", "key"
    )
    now = datetime.now(UTC)
    for row in run_db(work):
        health = _channel_health(row, now)
        if as_json:
            record = {
                "id": row.id,
                "name": row.name,
                "provider": row.provider,
                "base_url": row.base_url,
                "models": orjson.loads(row.models),
                "priority": row.priority,
                "weight": row.weight,
                "enabled": row.enabled,
                "health": health,
                "cooldown_until": row.cooldown_until.isoformat() if row.cooldown_until else None,
                "last_error_at": row.last_error_at.isoformat() if row.last_error_at else None,
                "last_error": row.last_error,
                "has_key": row.api_key_enc is not None,
            }
            typer.echo(orjson.dumps(record).decode())
            continue
        last_error = (
            f"{row.last_error_at:%Y-%m-%d %H:%M:%S} UTC {row.last_error}" if row.last_error_at else "-"
        )
        table.add_row(
            str(row.id),
            row.name,
            row.provider,
            row.base_url,
            ", ".join(orjson.loads(row.models)),
            str(row.priority),
            str(row.weight),
            health,
            last_error,
            "set" if row.api_key_enc else "-",
        )
    if not as_json:
        out.print(table)


@channel_app.command("test")
def channel_test(
    name: str,
    model: Annotated[
        str | None, typer.Option(help="A model the channel serves (default: its first).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 30.0,
) -> None:
    """Send one tiny real request (max_tokens 1) through the channel and print status and latency.
    Nothing is billed and no usage row is written."""
    from model_go.relay.channel_check import check
    from model_go.relay.snapshot import channel_from_row

    settings = Settings()

    async def work(conn: AsyncConnection, keyring: KeyRing) -> Any:
        return next((r for r in await repo.list_channels(conn) if r.name == name), None), keyring

    row, keyring = run_db(work, settings)
    if row is None:
        raise fail(f"no such channel: {name}")
    if row.provider not in REGISTRY:
        raise fail(f"provider {row.provider!r} is not available in this build")
    channel = channel_from_row(row, keyring)
    model = model or channel.models[0]
    if model not in channel.models:
        raise fail(f"channel {name} does not serve {model!r}; it serves {', '.join(channel.models)}")
    result = asyncio.run(check(channel, model, min(settings.upstream_connect_timeout, timeout), timeout))
    where = f"channel {name} ({channel.provider}, model {model})"
    status = f"HTTP {result.status}" if result.status is not None else "no answer"
    if result.ok:
        out.print(f"ok: {where} answered {status} in {result.latency_ms} ms", highlight=False)
        return
    assert result.error is not None
    err.print(
        f"[red]failed:[/red] {where}: {status}, {result.error.code}: {result.error.message} "
        f"({result.latency_ms} ms)",
        highlight=False,
    )
    raise typer.Exit(1)


@channel_app.command("disable")
def channel_disable(name: str) -> None:
    """Stop routing to a channel."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        await repo.set_channel_enabled(conn, name, False, reason="disabled by operator")

    run_db(work)
    out.print(f"disabled channel {name}", highlight=False)


@channel_app.command("enable")
def channel_enable(name: str) -> None:
    """Route to a channel again."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        await repo.set_channel_enabled(conn, name, True)

    run_db(work)
    out.print(f"enabled channel {name}", highlight=False)


# -- prices -------------------------------------------------------------------------------------


@price_app.command("set")
def price_set(
    model: str,
    input_usd: Annotated[str, typer.Option("--input", help="USD per 1M input tokens.")],
    output_usd: Annotated[str, typer.Option("--output", help="USD per 1M output tokens.")],
    cached_input_usd: Annotated[
        str | None,
        typer.Option("--cached-input", help="USD per 1M cached input tokens (default: the input price)."),
    ] = None,
) -> None:
    """Set a model's price."""
    input_per_1m = _usd(input_usd, "--input")
    output_per_1m = _usd(output_usd, "--output")
    cached = _usd(cached_input_usd, "--cached-input") if cached_input_usd is not None else input_per_1m

    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        await repo.set_price(
            conn,
            model,
            input_per_1m=input_per_1m,
            output_per_1m=output_per_1m,
            cached_input_per_1m=cached,
        )

    run_db(work)
    out.print(
        f"price for {model}: input {micros_to_usd(input_per_1m)}, cached input {micros_to_usd(cached)}, "
        f"output {micros_to_usd(output_per_1m)} USD per 1M tokens",
        highlight=False,
    )


@price_app.command("list")
def price_list() -> None:
    """List prices in USD per 1M tokens."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        return list(await repo.list_prices(conn))

    table = Table("model", "input", "cached input", "output")
    for row in run_db(work):
        table.add_row(
            row.model,
            micros_to_usd(row.input_per_1m),
            micros_to_usd(row.cached_input_per_1m),
            micros_to_usd(row.output_per_1m),
        )
    out.print(table)


# -- usage --------------------------------------------------------------------------------------

USAGE_FIELDS = ("username", *USAGE_VIEW_FIELDS)


@usage_app.command("list")
def usage_list(
    user: Annotated[str | None, typer.Option(help="Only this user's requests.")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00Z.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List usage rows (metadata only: prompts and replies are never stored)."""
    since_dt = None
    if since:
        try:
            since_dt = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise fail(f"--since: not an ISO date or time: {since!r}") from None
        if since_dt.tzinfo is None:
            from datetime import UTC

            since_dt = since_dt.replace(tzinfo=UTC)

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        user_id = (await repo.user_by_username(conn, user)).id if user else None
        return list(await repo.list_usage(conn, user_id=user_id, since=since_dt))

    rows = run_db(work)
    if as_json:
        for row in rows:
            record = {name: getattr(row, name) for name in USAGE_FIELDS}
            record["cost_usd"] = micros_to_usd(row.cost_micros)
            record["created_at"] = row.created_at.isoformat()
            typer.echo(orjson.dumps(record).decode())
        return
    table = Table("time (UTC)", "user", "model", "status", "prompt", "completion", "cost USD", "latency ms")
    for row in rows:
        table.add_row(
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.username,
            row.model,
            str(row.status_code),
            str(row.prompt_tokens),
            str(row.completion_tokens) + ("*" if row.usage_estimated else ""),
            micros_to_usd(row.cost_micros),
            str(row.latency_ms),
        )
    out.print(table)
    if any(row.usage_estimated for row in rows):
        out.print("* estimated: the upstream reported no usage for that request", highlight=False)


# -- retention ----------------------------------------------------------------------------------


@retention_app.command("run")
def retention_run() -> None:
    """Delete usage rows older than MODELGO_USAGE_RETENTION_DAYS (max 90) and purge them physically."""
    from model_go.usage import retention

    settings = Settings()

    async def main() -> retention.PurgeResult:
        engine = make_engine(settings.resolved_database_url(), pool=False)
        try:
            await migrate(engine)
            return await retention.run(engine, settings.usage_retention_days)
        finally:
            await engine.dispose()

    result = asyncio.run(main())
    out.print(
        f"removed {result.usage_rows} usage rows older than {settings.usage_retention_days} days",
        highlight=False,
    )
    if not result.purged_physically:
        err.print("[yellow]note:[/yellow] the WAL checkpoint stayed busy; run it again", highlight=False)


def main() -> None:
    app()
