"""`musket console`: thin wrappers over musket.console. Registered on the main group in cli.py.

Without a command it opens the full-screen console for a person; with one it runs that command
once (for scripts: `--json`) and exits.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console

from musket.errors import BadInput, ExitCode

_REGISTRY_HELP = ("Registry for SIM swaps: a SQLite file or a PostgreSQL URL. Default: "
                  "$MUSKET_REGISTRY, else ./musket-registry.sqlite. When it cannot be reached "
                  "the swap is queued (see --queue).")
# Read commands: the same words on the console and one-shot.
READ_COMMANDS = ("status", "signal", "log", "counters", "sensors", "selftest")


def _unit_options(f):
    """The group's unit options also after the command (`musket console status --port P`);
    given there, they win over the group's."""
    def take(ctx, param, value):
        if value is not None:
            settings = ctx.find_object(Settings)
            setattr(settings, param.name, Path(value) if param.name == "queue" else value)
        return value

    for name, meta in (("--station", None), ("--queue", "FILE"), ("--registry", "FILE|URL"),
                       ("--technician", None), ("--port", None)):
        f = click.option(name, default=None, metavar=meta, expose_value=False, callback=take,
                         help=f"As {name} before the command.")(f)
    return f


class Settings:
    def __init__(self, port, baud, technician, location, queue, station):
        self.port, self.baud, self.technician = port, baud, technician
        self.registry, self.station = location, station
        from musket.console import rebind

        self.queue = Path(queue) if queue else rebind.default_queue()

    def context(self, yes: bool = False):
        from musket.console.commands import Context

        def confirm(summary: str) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                raise BadInput(f"{summary}: needs a confirmation; run it again with --yes",
                               hint="nothing was changed")
            return click.confirm(f"{summary}: go ahead?", default=False, err=True)

        def ask(question: str) -> str | None:
            return click.prompt(question.rstrip(": "), err=True) if sys.stdin.isatty() else None

        ctx = Context(confirm=confirm, ask=ask, technician=self.technician,
                      registry=self.registry, queue=self.queue, port=self.port or "")
        if self.station:
            ctx.station = self.station
        return ctx

    def client(self):
        from musket.console import ConsoleClient

        if not self.port:
            raise click.UsageError("give the unit's console port: musket console --port P ...")
        return ConsoleClient.open(self.port, self.baud)


@click.group("console", invoke_without_command=True)
@click.option("--port", default=None, help="The unit's console: /dev/ttyUSB0, /dev/pts/N, or "
                                            "a pyserial URL.")
@click.option("--baud", default=115200, show_default=True, type=int)
@click.option("--technician", envvar="MUSKET_TECHNICIAN", default=None,
              help="Your name, recorded with every change (default: $MUSKET_TECHNICIAN, else "
                   "asked when a change needs it).")
@click.option("--registry", "location", default=None, metavar="FILE|URL", help=_REGISTRY_HELP)
@click.option("--queue", default=None, type=click.Path(dir_okay=False),
              help="Where SIM swaps wait while the registry is out of reach (default: "
                   "~/.local/share/musket/console-rebinds.jsonl).")
@click.option("--station", envvar="MUSKET_STATION", default=None,
              help="Where you are, for the registry's audit log (default: this machine's name).")
@click.pass_context
def console_group(ctx, port, baud, technician, location, queue, station):
    """The technician's console on a running unit: status, diagnosis, signal, sensors,
    selftest, settings, AT passthrough, SIM swap, counter adjustment. The application keeps
    running (counting goes on). Without a command: a full-screen view that refreshes and a
    command line (Tab completes, ↑ recalls, `help` lists the commands).

    \b
    Examples:
      musket console --port /dev/ttyUSB0 --technician ana
      musket console --port /dev/ttyUSB0 status --json
      musket console status --port /dev/ttyUSB0 --json
    """
    ctx.obj = Settings(port, baud, technician, location, queue, station)
    if ctx.invoked_subcommand is not None:
        return
    from musket.console.session import Session

    settings: Settings = ctx.obj
    client = settings.client()
    history = settings.queue.parent / "console-history"
    history.parent.mkdir(parents=True, exist_ok=True)
    session = Session(client, settings.context(), history)
    try:
        session.run()
    finally:
        client.close()
    if session.start_repl:
        _hand_to_repl(settings.port)


def _print(command: str, result, as_json: bool, port: str) -> None:
    from musket.console import redact, view

    if as_json:
        click.echo(json.dumps(redact(result), indent=2, ensure_ascii=False))
        return
    renderable = (view.status_screen(result, port) if command == "status"
                  else view.answer_view(command, result))
    Console(highlight=False).print(renderable)


def _run(settings: Settings, words: list[str], as_json: bool, yes: bool = False):
    from musket.console import commands

    commands.find(words)  # an unknown command is refused before the port is opened
    with settings.client() as client:
        result = commands.execute(client, words, settings.context(yes))
    _print(words[0], result, as_json, settings.port)
    return result


def _read_command(name: str):
    @click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
    @_unit_options
    @click.pass_obj
    def command(settings, as_json):
        result = _run(settings, [name], as_json)
        if name == "selftest" and isinstance(result, dict) and result.get("passed") is False:
            sys.exit(ExitCode.DEVICE_ERRORS)

    from musket.console.commands import COMMANDS

    command.__doc__ = (f"{COMMANDS[name].help.capitalize()}, once.\n\n\b\nExample:\n"
                       f"  musket console {name} --port /dev/ttyUSB0 --json\n")
    return click.command(name)(command)


for _name in READ_COMMANDS:
    console_group.add_command(_read_command(_name))


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
_yes_option = click.option("--yes", is_flag=True,
                           help="Confirm the change without asking (for scripts).")


@console_group.command("config")
@click.argument("action", type=click.Choice(["get", "set"]))
@click.argument("key")
@click.argument("value", required=False)
@_json_option
@_yes_option
@_unit_options
@click.pass_obj
def config_cmd(settings, action, key, value, as_json, yes):
    """Read a setting, or change one (service mode; the unit validates it and answers with the
    old and new value).

    \b
    Examples:
      musket console config --port /dev/ttyUSB0 get report_interval_s
      musket console config --port /dev/ttyUSB0 set report_interval_s 900 --yes
    """
    words = ["config", action, key] + ([value] if value is not None else [])
    _run(settings, words, as_json, yes)


@console_group.command("at")
@click.argument("command", nargs=-1, required=True)
@_json_option
@_yes_option
@_unit_options
@click.pass_obj
def at_cmd(settings, command, as_json, yes):
    """Pass an AT command to the modem. Queries answer at once; a command that changes the
    radio or the SIM needs service mode and a confirmation.

    \b
    Example:
      musket console at --port /dev/ttyUSB0 +CEREG?
    """
    _run(settings, ["at", *command], as_json, yes)


@console_group.command("sim-swap")
@click.option("--reason", default="", help="Why the SIM was swapped, for the audit log.")
@_json_option
@_yes_option
@_unit_options
@click.pass_obj
def sim_swap_cmd(settings, reason, as_json, yes):
    """Re-read the unit's ICCID; a new SIM is recorded on the unit (service mode, confirmed)
    and in the registry, or queued for `musket console sync` when the registry is out of reach.

    \b
    Example:
      musket console sim-swap --port /dev/ttyUSB0 --technician ana --reason "SIM cracked"
    """
    _run(settings, ["sim-swap", *reason.split()], as_json, yes)


@console_group.command("counter")
@click.argument("action", type=click.Choice(["adjust"]))
@click.argument("name")
@click.argument("value", type=int)
@click.argument("reason", nargs=-1, required=True)
@_json_option
@_yes_option
@_unit_options
@click.pass_obj
def counter_cmd(settings, action, name, value, reason, as_json, yes):
    """Set a counter to a value, with a reason (service mode, confirmed; recorded on the unit
    and upstream with the technician's name).

    \b
    Example:
      musket console counter --port /dev/ttyUSB0 adjust brews 1200 display replaced
    """
    _run(settings, ["counter", action, name, str(value), *reason], as_json, yes)


@console_group.command("service")
@click.argument("state", type=click.Choice(["on", "off"]))
@_json_option
@_unit_options
@click.pass_obj
def service_cmd(settings, state, as_json):
    """Service mode on (changes allowed, each recorded with --technician's name) or off.

    \b
    Example:
      musket console service --port /dev/ttyUSB0 --technician ana on
    """
    _run(settings, ["service", state], as_json)


@console_group.command("reboot")
@_json_option
@_yes_option
@_unit_options
@click.pass_obj
def reboot_cmd(settings, as_json, yes):
    """Restart the unit (service mode, confirmed).

    \b
    Example:
      musket console reboot --port /dev/ttyUSB0 --yes
    """
    _run(settings, ["reboot"], as_json, yes)


@console_group.command("repl")
@_unit_options
@click.pass_obj
def repl_cmd(settings):
    """Hand the port to mpremote's REPL. Ctrl-C there stops the application (counting stops)
    until the unit is reset (Ctrl-D in the REPL, or power).

    \b
    Example:
      musket console repl --port /dev/ttyUSB0
    """
    if not settings.port:
        raise click.UsageError("give the unit's console port: musket console --port P repl")
    _hand_to_repl(settings.port)


def _hand_to_repl(port: str) -> None:
    mpremote = shutil.which("mpremote", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    click.echo("the application stops when the REPL interrupts it (counting stops); reset "
               "the unit (Ctrl-D in the REPL) to start it again", err=True)
    if mpremote is None:
        click.echo(f"run: mpremote connect {port} repl", err=True)
        return
    os.execv(mpremote, [mpremote, "connect", port, "repl"])


@console_group.command("sync")
@_json_option
@_unit_options
@click.pass_obj
def sync_cmd(settings, as_json):
    """Apply the SIM swaps queued while the registry was out of reach. A swap the registry
    refuses stays queued with its reason.

    \b
    Example:
      musket console sync --registry postgresql://musket@db/musket
    """
    from musket.console import rebind

    outcomes = rebind.sync(settings.registry, settings.queue)
    if as_json:
        click.echo(json.dumps([o.as_dict() for o in outcomes], indent=2))
    elif not outcomes:
        click.echo(f"no queued SIM swaps in {settings.queue}")
    for o in [] if as_json else outcomes:
        click.echo(f"{o.state}: {o.detail}")
    if any(o.state == "refused" for o in outcomes):
        sys.exit(ExitCode.REGISTRY_REFUSED)
