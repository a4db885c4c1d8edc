"""`model-go channel ...`: add, list, test, enable and disable upstream channels."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import err, fail, load_settings, out, run_db, split_models
from model_go.providers import REGISTRY
from model_go.security import KeyRing
from model_go.services import channels

channel_app = typer.Typer(help="Manage upstream channels.", no_args_is_help=True)

ADD_OPTIONS = {
    "base_url": "--base-url",
    "api_key": "--api-key-stdin",
    "config": "--config",
    "model_map": "--model-map",
    "models": "--models",
}


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
    api_key = sys.stdin.readline().strip() if api_key_stdin else None
    if api_key_stdin and not api_key:
        raise fail("--api-key-stdin given but stdin was empty")

    async def work(conn: AsyncConnection, keyring: KeyRing) -> channels.AddedChannel:
        return await channels.add(
            conn,
            keyring,
            name=name,
            provider=provider,
            models=split_models(models) or [],
            base_url=base_url,
            api_key=api_key,
            model_map=channels.parse_model_map(model_map or []),
            priority=priority,
            weight=weight,
            config=channels.parse_config(config or []),
        )

    added = run_db(work, options=ADD_OPTIONS)
    out.print(f"added channel {name} (id {added.channel.id}, provider {provider})", highlight=False)
    if added.unpriced:
        err.print(
            f"[yellow]note:[/yellow] no price set for {', '.join(added.unpriced)}; requests for them are "
            "refused until `model-go price set MODEL --input X --output Y`",
            highlight=False,
        )


def _record(channel: channels.ChannelView, health: str) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "provider": channel.provider,
        "base_url": channel.base_url,
        "models": channel.models,
        "priority": channel.priority,
        "weight": channel.weight,
        "enabled": channel.enabled,
        "health": health,
        "cooldown_until": channel.cooldown_until.isoformat() if channel.cooldown_until else None,
        "last_error_at": channel.last_error_at.isoformat() if channel.last_error_at else None,
        "last_error": channel.last_error,
        "has_key": channel.has_api_key,
    }


@channel_app.command("list")
def channel_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List channels with their health (keys are never shown). Cooldowns and errors are as a server
    last reported them."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[channels.ChannelView]:
        return await channels.list_all(conn)

    table = Table(
        "id", "name", "provider", "base url", "models", "priority", "weight", "health", "last error", "key"
    )
    now = datetime.now(UTC)
    for channel in run_db(work):
        health = channel.health(now)
        if as_json:
            typer.echo(orjson.dumps(_record(channel, health)).decode())
            continue
        last_error = (
            f"{channel.last_error_at:%Y-%m-%d %H:%M:%S} UTC {channel.last_error}"
            if channel.last_error_at
            else "-"
        )
        table.add_row(
            str(channel.id),
            channel.name,
            channel.provider,
            channel.base_url,
            ", ".join(channel.models),
            str(channel.priority),
            str(channel.weight),
            health,
            last_error,
            "set" if channel.has_api_key else "-",
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

    settings = load_settings()

    async def work(conn: AsyncConnection, keyring: KeyRing) -> tuple[Row[Any], KeyRing]:
        return await channels.row_by_name(conn, name), keyring

    row, keyring = run_db(work, settings)
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


def _set_enabled(name: str, enabled: bool) -> None:
    async def work(conn: AsyncConnection, _k: KeyRing) -> channels.ChannelView:
        return await channels.set_enabled(conn, name, enabled)

    run_db(work)
    out.print(f"{'enabled' if enabled else 'disabled'} channel {name}", highlight=False)


@channel_app.command("disable")
def channel_disable(name: str) -> None:
    """Stop routing to a channel."""
    _set_enabled(name, False)


@channel_app.command("enable")
def channel_enable(name: str) -> None:
    """Route to a channel again."""
    _set_enabled(name, True)
