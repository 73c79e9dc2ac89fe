"""The console's commands, as a person types them: one table that the interactive session (its
completion and help) and the one-shot CLI both run, so each command has one meaning.

`execute(client, words, ctx)` runs one command line and returns its result; `ctx` says who is
at the unit and how to ask them (a confirmation, a name), and where the registry is for a SIM
swap.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from musket.console import rebind
from musket.console.client import ConsoleClient
from musket.errors import BadInput


class BadCommand(BadInput):
    """A command line the console does not know, or one with missing words."""


@dataclass
class Context:
    """Who is at the unit and how to reach them. `ask(question)` returns their answer (None
    when there is nobody to ask); `confirm(summary)` says yes or no to a change."""

    confirm: Callable[[str], bool]
    ask: Callable[[str], str | None] = lambda question: None
    technician: str | None = None
    registry: str | None = None
    queue: Path = field(default_factory=rebind.default_queue)
    station: str = field(default_factory=lambda: os.uname().nodename or "field")
    port: str = ""

    def technician_name(self) -> str:
        if not self.technician:
            self.technician = (self.ask("technician's name: ") or "").strip() or None
        if not self.technician:
            raise BadCommand("a change needs the technician's name: give --technician NAME")
        return self.technician


@dataclass(frozen=True)
class Command:
    usage: str
    help: str
    run: Callable[[ConsoleClient, list[str], Context], object]
    live: bool = False  # the session refreshes it until the next command


def _service(client: ConsoleClient, args: list[str], ctx: Context):
    if args[:1] == ["off"]:
        return client.service_off()
    if args[:1] != ["on"]:
        raise BadCommand("service on [NAME] | service off")
    if len(args) > 1:
        ctx.technician = " ".join(args[1:])
    return client.service_on(ctx.technician_name())


def _config(client: ConsoleClient, args: list[str], ctx: Context):
    if len(args) == 2 and args[0] == "get":
        return client.config_get(args[1])
    if len(args) >= 3 and args[0] == "set":
        return client.config_set(args[1], " ".join(args[2:]), ctx.confirm)
    raise BadCommand("config get KEY | config set KEY VALUE")


def _at(client: ConsoleClient, args: list[str], ctx: Context):
    if not args:
        raise BadCommand("at COMMAND (e.g. at +CSQ)")
    command = " ".join(args)
    return client.at(command if command.upper().startswith("AT") else "AT" + command,
                     ctx.confirm)


def _counter(client: ConsoleClient, args: list[str], ctx: Context):
    if len(args) < 4 or args[0] != "adjust":
        raise BadCommand("counter adjust NAME VALUE REASON")
    try:
        value = int(args[2])
    except ValueError:
        raise BadCommand(f"counter adjust: {args[2]!r} is not a whole number") from None
    return client.counter_adjust(args[1], value, " ".join(args[3:]), ctx.confirm)


def _simswap(client: ConsoleClient, args: list[str], ctx: Context):
    """Re-reads the ICCID; a changed one is recorded on the unit (confirmed) and then in the
    registry, or queued for `musket console sync`."""
    status = client.status()
    device_id = device_id_of(status)
    technician = ctx.technician_name()
    swap = client.simswap(ctx.confirm)
    old, new = swap.get("old_iccid"), swap.get("new_iccid")
    if not swap.get("changed") or not new:
        return {**swap, "registry": "nothing to record: the SIM is the one the unit had"}
    if not device_id:
        raise BadCommand("the unit has no device ID (not provisioned): provision it with "
                         "`musket provision` instead")
    seen = rebind.Swap.seen_now(device_id, old, new, technician, " ".join(args), ctx.station)
    outcome = rebind.record_or_queue(ctx.registry, seen, ctx.queue)
    return {**swap, "device_id": device_id, "registry": outcome.state,
            "detail": outcome.detail}


def _reboot(client: ConsoleClient, args: list[str], ctx: Context):
    return client.reboot(ctx.confirm)


def _repl(client: ConsoleClient, args: list[str], ctx: Context):
    return {"repl": f"mpremote connect {ctx.port or 'PORT'} repl",
            "note": "Ctrl-C stops the application on the unit (counting stops) until it is "
                    "reset: Ctrl-D in the REPL, or `reboot`"}


def device_id_of(status) -> str | None:
    if not isinstance(status, dict):
        return None
    identity = status.get("identity") if isinstance(status.get("identity"), dict) else {}
    return status.get("device_id") or identity.get("device_id")


COMMANDS: dict[str, Command] = {
    "status": Command("status", "identity, modem, broker link, counters, sensors, diagnoses",
                      lambda c, a, x: c.status()),
    "signal": Command("signal", "radio signal and registration (live)",
                      lambda c, a, x: c.signal(), live=True),
    "log": Command("log", "the unit's recent log lines", lambda c, a, x: c.log()),
    "counters": Command("counters", "counters and their thresholds",
                        lambda c, a, x: c.counters()),
    "sensors": Command("sensors", "sensor readings and faults (live)",
                       lambda c, a, x: c.sensors(), live=True),
    "selftest": Command("selftest", "check every part; ends with diagnosis codes",
                        lambda c, a, x: c.selftest()),
    "config": Command("config get KEY | config set KEY VALUE",
                      "read a setting; change one (service mode, confirmed)", _config),
    "at": Command("at COMMAND", "modem AT passthrough (changes: service mode, confirmed)", _at),
    "sim-swap": Command("sim-swap [REASON]",
                        "re-read the ICCID; record a new SIM on the unit and in the registry",
                        _simswap),
    "counter": Command("counter adjust NAME VALUE REASON",
                       "set a counter, with a reason (service mode, confirmed)", _counter),
    "service": Command("service on [NAME] | service off",
                       "service mode: changes allowed, recorded with your name", _service),
    "reboot": Command("reboot", "restart the unit (service mode, confirmed)", _reboot),
    "repl": Command("repl", "hand the port to mpremote's REPL (stops the application)", _repl),
}
ALIASES = {"simswap": "sim-swap"}


def find(words: list[str]) -> Command:
    if not words:
        raise BadCommand("no command (try `help`)")
    name = ALIASES.get(words[0].lower(), words[0].lower())
    command = COMMANDS.get(name)
    if command is None:
        raise BadCommand(f"unknown command {words[0]!r}: one of {', '.join(COMMANDS)}")
    return command


def execute(client: ConsoleClient, words: list[str], ctx: Context):
    """Runs one command line (split into words); returns the unit's answer."""
    return find(words).run(client, words[1:], ctx)
