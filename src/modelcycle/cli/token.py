"""``modelcycle token …``: API tokens for the platform server."""

from __future__ import annotations

from typing import Annotated

import typer

from modelcycle.cli.context import open_workspace
from modelcycle.cli.output import console, print_json, table, when

app = typer.Typer(
    help="API tokens for `modelcycle server`: create (shown once), list, revoke.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses it, e.g. ci-bot or ana.")],
    role: Annotated[
        str, typer.Option(help="reader (read), editor (read and change), admin (everything).")
    ] = "reader",
    expires: Annotated[
        str | None, typer.Option(help="Expire after this long: 30d, 12h … (default: never).")
    ] = None,
    project: Annotated[
        list[str] | None,
        typer.Option(
            "--project",
            help="Limit the token to names matching this glob, e.g. 'fraud-*' (repeatable).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a token; it is printed once, as the last word of the last line."""
    from modelcycle.core.durations import parse_duration

    seconds = None if expires is None else parse_duration(expires, "--expires", require_unit=True)
    with open_workspace() as ws:
        row, secret = ws.tokens.create(name, role=role, expires_in=seconds, projects=project or ())
    if json_out:
        print_json({**row.to_dict(), "token": secret})
        return
    until = f", expires {when(row.expires_at)}" if row.expires_at else ""
    scope = f", projects {', '.join(row.projects)}" if row.projects else ""
    console.print(
        f"Created token {row.name} (role {row.role}{scope}{until}). Keep it now: it is not"
    )
    console.print("shown again; only its hash is stored.")
    print(f"token: {secret}")


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Tokens not revoked (their names and roles; never the secrets)."""
    with open_workspace() as ws:
        rows = ws.tokens.list()
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        console.print("No tokens: `modelcycle server` is open to 127.0.0.1 only.")
        return
    table(
        ["name", "role", "projects", "starts with", "created", "by", "expires"],
        [
            [
                r.name,
                r.role,
                ", ".join(r.projects) or "all",
                r.prefix + "…",
                when(r.created_at),
                r.created_by,
                when(r.expires_at) if r.expires_at else "never",
            ]
            for r in rows
        ],
    )


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token; servers refuse it within a few seconds."""
    with open_workspace() as ws:
        row = ws.tokens.revoke(name)
    console.print(f"Revoked token {row.name} ({row.role}).")
