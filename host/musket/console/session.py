"""The interactive console for people: a full-screen status view that refreshes, the last
command's answer under it, and a command line with history and completion (prompt_toolkit).

The serial port is used by one worker thread, one request at a time: the screen never blocks
on the unit. A change's confirmation and the technician's name are asked on the command line
itself (the worker waits for the answer). A live command (signal, sensors) is asked again every
LIVE_REFRESH_S until the next command. A pulled cable ends the session with ConsoleGone.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.completion import NestedCompleter
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension
from rich.console import Group
from rich.table import Table
from rich.text import Text

from musket.console import commands, rebind, view
from musket.console.client import ConsoleClient
from musket.console.wire import ConsoleGone
from musket.errors import MusketError

# How often the status view asks the unit again: fresh enough to watch a fault clear, rare
# enough that the console costs the unit almost nothing (a status answer is ~2 KB at 115200).
STATUS_REFRESH_S = 5.0
# How often a live command (signal, sensors) is asked again.
LIVE_REFRESH_S = 2.0
LOG_LINES_KEPT = 6
QUIT_WORDS = ("quit", "exit")

COMPLETIONS = {
    "status": None, "signal": None, "log": None, "counters": None, "sensors": None,
    "selftest": None, "config": {"get": None, "set": None},
    "at": {"+CSQ": None, "+CEREG?": None, "+COPS?": None, "+CCID": None, "+CFUN?": None},
    "sim-swap": None, "counter": {"adjust": None}, "service": {"on": None, "off": None},
    "reboot": None, "repl": None, "help": None, "quit": None,
}


class Session:
    def __init__(self, client: ConsoleClient, ctx: commands.Context,
                 history: Path | None = None) -> None:
        self.client = client
        self.ctx = ctx
        ctx.confirm = self._confirm
        ctx.ask = self._ask
        self.status_text = "reading the unit's status…"
        self.output_text = "type `help` for the commands; Tab completes, ↑ recalls"
        self.question: str | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._live: str | None = None
        self._busy = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console")
        self._stop = threading.Event()
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self.start_repl = False
        client.wire.on_line = self.log_lines.append
        self.input = Buffer(
            multiline=False, completer=NestedCompleter.from_nested_dict(COMPLETIONS),
            history=FileHistory(str(history)) if history else InMemoryHistory(),
            accept_handler=self._accept, complete_while_typing=False)
        self.app = self._application()

    # -- layout ------------------------------------------------------------------------------

    def _application(self) -> Application:
        keys = KeyBindings()

        @keys.add("c-c")
        @keys.add("c-d")
        def _quit(event):
            self._answers.put(None)
            event.app.exit()

        @keys.add("escape")
        def _stop_live(event):
            self._live = None

        width = lambda: self.app.output.get_size().columns  # noqa: E731
        status = Window(FormattedTextControl(lambda: ANSI(self.status_text)),
                        height=Dimension(weight=3), wrap_lines=False)
        output = Window(FormattedTextControl(lambda: ANSI(self.output_text)),
                        height=Dimension(weight=2), wrap_lines=True)
        prompt = Window(FormattedTextControl(lambda: self.question or "musket> "),
                        dont_extend_width=True)
        body = HSplit([status, Window(height=1, char="─"), output,
                       Window(height=1, char="─"),
                       VSplit([prompt, Window(BufferControl(self.input))], height=1)])
        self._width = width
        return Application(layout=Layout(body, focused_element=self.input), key_bindings=keys,
                           full_screen=True, mouse_support=False)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Runs until quit; raises ConsoleGone when the port goes away."""
        self._gone: MusketError | None = None
        self._worker.submit(self._guard, self._start)
        ticker = threading.Thread(target=self._tick, daemon=True)
        ticker.start()
        try:
            self.app.run()
        finally:
            self._stop.set()
            self._answers.put(None)
            self._worker.shutdown(wait=True, cancel_futures=True)
        if self._gone is not None:
            raise self._gone

    def _start(self) -> None:
        if rebind.pending(self.ctx.queue):
            try:
                done = rebind.sync(self.ctx.registry, self.ctx.queue)
            except MusketError as e:
                self._show(Text(f"queued SIM swaps not applied yet: {e}"))
            else:
                self._show(Group(*(Text(f"queued SIM swap {o.state}: {o.detail}")
                                        for o in done)))
        self._refresh_status()

    def _tick(self) -> None:
        waited = 0.0
        while not self._stop.wait(LIVE_REFRESH_S):
            waited += LIVE_REFRESH_S
            if self._busy.locked():
                continue
            if self._live is not None:
                self._worker.submit(self._guard, self._run_words, self._live.split(), True)
            if waited >= STATUS_REFRESH_S:
                waited = 0.0
                self._worker.submit(self._guard, self._refresh_status)

    def _accept(self, buffer: Buffer) -> bool:
        line = buffer.text.strip()
        if self.question is not None:
            self._answers.put(line)
            return False
        if line.lower() in QUIT_WORDS:
            self.app.exit()
            return False
        if line:
            self._live = None
            self._worker.submit(self._guard, self._run_words, line.split(), False)
        return False

    def _run_words(self, words: list[str], again: bool) -> None:
        with self._busy:
            if words[0].lower() == "help":
                self._show(_help())
                return
            command = commands.find(words)
            if not again:
                self._show(Text(f"{' '.join(words)} …"))
            result = commands.execute(self.client, words, self.ctx)
            name = words[0].lower()
            self._show(view.status_screen(result, self.ctx.port) if name == "status"
                       else view.answer_view(" ".join(words), result))
            if command.live and not again:
                self._live = " ".join(words)
            if name == "repl":
                self.start_repl = True
                self.app.exit()
        if name in ("status", "selftest", "service", "config", "sim-swap", "counter", "at"):
            self._refresh_status()

    def _refresh_status(self) -> None:
        with self._busy:
            status = self.client.status()
        self.status_text = view.to_ansi(view.status_screen(status, self.ctx.port),
                                        self._width())
        self.app.invalidate()

    def _guard(self, step, *args) -> None:
        """Runs one step on the worker: a refused or bad command is shown, a gone port ends
        the session."""
        try:
            step(*args)
        except ConsoleGone as e:
            self._gone = e
            self.app.exit()
        except MusketError as e:
            self._show(Text(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""),
                                 style="red"))

    def _show(self, renderable) -> None:
        self.output_text = view.to_ansi(renderable, self._width())
        self.app.invalidate()

    # -- asking the person at the unit (from the worker thread) -------------------------------

    def _ask(self, question: str) -> str | None:
        self.question = question
        self.app.invalidate()
        try:
            return self._answers.get()
        finally:
            self.question = None
            self.app.invalidate()

    def _confirm(self, summary: str) -> bool:
        self._show(Text(f"about to: {summary}", style="bold yellow"))
        answer = self._ask("confirm? [y/N] ")
        return (answer or "").strip().lower() in ("y", "yes")


def _help():
    table = Table(title="commands", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for command in commands.COMMANDS.values():
        table.add_row(command.usage, command.help)
    table.add_row("quit", "leave the console (Ctrl-D); the unit keeps running")
    return table
