"""`musket fleet web ...`: the team pages' server and their operators. Thin wrappers over
musket.web; registered on the fleet group in cli_fleet.py."""

from __future__ import annotations

import os

import click

from musket.cli_registry import _actor_options, _registry, _registry_option
from musket.errors import BadInput

DEFAULT_PORT = 8080


@click.group("web", invoke_without_command=True)
@_registry_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every interface; put TLS in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT,
              show_default=True)
@click.pass_context
def web_group(ctx, location, host, port):
    """The team pages (engineering, operations, finance, customer success) over the
    registry's database, until Ctrl-C or SIGTERM. Operators log in: add them with
    `musket fleet web user add`. Set $MUSKET_WEB_SECRET (the key that signs session cookies)
    so that sessions outlive a restart and several copies share them.

    \b
    Example:
      musket fleet web --registry postgresql://fleet@db/musket --port 8080
      MUSKET_WEB_PASSWORD=... musket fleet web user add ana --role operations
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"location": location}
        return
    import uvicorn

    from musket.web.app import create_app

    registry = _registry().Registry.open(location)
    click.echo(f"web: team pages for {registry.url} on http://{host}:{port}/", err=True)
    try:
        uvicorn.run(create_app(registry.engine), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        registry.close()


@web_group.group("user")
def user_group() -> None:
    """The operators who may log in to the team pages, each with a role.

    \b
    Example:
      musket fleet web user add ana --role operations
      musket fleet web user list
    """


@user_group.command("add")
@click.argument("name")
@click.option("--role", required=True,
              help="What the user may change: a role of docs/web.md's table (checked "
                   "against musket.web.users.ROLES).")
@click.option("--password-env", default=None, metavar="VAR",
              help="Read the password from this environment variable (default: prompt "
                   "for it, unseen, twice).")
@_registry_option
@_actor_options
@click.pass_context
def user_add(ctx, name, role, password_env, location, station, operator):
    """Add an operator (or give one a new role and password); audited, without the password.

    \b
    Example:
      musket fleet web user add ana --role operations
      MUSKET_WEB_PASSWORD=... musket fleet web user add ben --role finance \\
          --password-env MUSKET_WEB_PASSWORD
    """
    from musket.web import users

    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise BadInput(f"no password: ${password_env} is not set",
                           hint=f"export {password_env}=... or leave out --password-env "
                                "to be asked")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    location = location or (ctx.obj or {}).get("location")
    with _registry().Registry.open(location) as registry:
        user = users.add_user(registry.engine, name, role, password,
                              _registry().default_actor(station, operator))
    click.echo(f"web user {user.name}: role {user.role}")


@user_group.command("list")
@_registry_option
@click.pass_context
def user_list(ctx, location):
    """The operators and their roles.

    \b
    Example:
      musket fleet web user list --registry postgresql://fleet@db/musket
    """
    from musket.web import users

    location = location or (ctx.obj or {}).get("location")
    with _registry().Registry.open(location) as registry:
        for user in users.users(registry.engine):
            click.echo(f"{user.name}\t{user.role}")
