"""The technician's console: talking to a running unit over its serial console (protocol B).

wire.py holds every byte of the protocol, client.py the typed commands, view.py what a person
sees, session.py the interactive full-screen console; the CLI (cli_console.py) only parses
options.
"""

from musket.console.client import ConsoleClient, NotConfirmed, redact
from musket.console.wire import ConsoleGone, ConsoleTimeout, DeviceRefused

__all__ = ["ConsoleClient", "ConsoleGone", "ConsoleTimeout", "DeviceRefused", "NotConfirmed",
           "redact"]
