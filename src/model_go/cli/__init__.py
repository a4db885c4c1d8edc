"""The `model-go` command. Every command works while the server runs, on the same database; the
server notices changes within a second (they bump the configuration version)."""

from __future__ import annotations

import typer

from model_go.cli import billing
from model_go.cli.channels import channel_app
from model_go.cli.keys import key_app
from model_go.cli.limits import tier_app
from model_go.cli.prices import price_app
from model_go.cli.retention import retention_app
from model_go.cli.serve import migrate, serve
from model_go.cli.usage import usage_app
from model_go.cli.users import balance, credit_app, user_app

app = typer.Typer(
    help="model-go: one API, one key, one balance in front of many AI providers.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(user_app, name="user")
app.add_typer(credit_app, name="credit")
app.add_typer(key_app, name="key")
app.add_typer(tier_app, name="tier")
app.add_typer(channel_app, name="channel")
app.add_typer(price_app, name="price")
app.add_typer(usage_app, name="usage")
app.add_typer(retention_app, name="retention")
app.command()(serve)
app.command()(migrate)
app.command()(balance)
billing.register(app, credit_app)


def main() -> None:
    app()


__all__ = ["app", "main"]
