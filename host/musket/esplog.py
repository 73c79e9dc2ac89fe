"""esptool's output, one stream per thread.

esptool 5 logs through one process-wide logger (esp-pylib's ``EspLog.instance``), which a
program replaces with ``set_logger`` and an ``EspLogBase`` subclass: the supported way to
redirect its messages and progress bars. musket installs one router there. A thread that is
flashing a port binds a sink (that port's log file and progress bar); esptool's calls from
that thread go to it. Threads without a sink get esptool's own logger, unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import esptool  # noqa: F401  (installs esptool's logger, which the router falls back to)
from esp_pylib.logger import EspLog, EspLogBase
from rich.text import Text


class Sink(Protocol):
    def line(self, text: str) -> None:
        """One message from esptool, plain text."""

    def progress(self, done: int, total: int) -> None:
        """esptool's progress through its current transfer, in bytes on the wire."""


class _Discard:
    def line(self, text: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass


def _plain(args: tuple[Any, ...]) -> str:
    text = " ".join(str(a) for a in args)
    try:
        return Text.from_markup(text).plain  # esptool marks up some messages for rich
    except Exception:  # noqa: BLE001 - text that is not valid markup is shown as it is
        return text


class _Router(EspLogBase):
    def __init__(self, fallback: EspLogBase) -> None:
        self.fallback = fallback
        self.local = threading.local()

    def _sink(self) -> Sink | None:
        return getattr(self.local, "sink", None)

    def _say(self, prefix: str, args: tuple[Any, ...], method: str, **kwargs: Any) -> None:
        sink = self._sink()
        if sink is None:
            getattr(self.fallback, method)(*args, **kwargs)
        else:
            sink.line(prefix + _plain(args))

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._say("", args, "print", **kwargs)

    def note(self, *args: Any) -> None:
        self._say("note: ", args, "note")

    def hint(self, *args: Any) -> None:
        self._say("hint: ", args, "hint")

    def debug(self, *args: Any) -> None:
        if self._sink() is None:
            self.fallback.debug(*args)

    def warn(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("warning: ", args, "warn", suggestion=suggestion)

    def err(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("error: ", args, "err", suggestion=suggestion)

    # esptool still calls the old names in places.
    warning = warn
    error = err

    def stage(self, finish: bool = False) -> None:
        if self._sink() is None:
            self.fallback.stage(finish)

    def set_verbosity(self, mode: int | str) -> None:
        self.fallback.set_verbosity(mode)

    def progress_bar(self, cur_iter: int, total_iters: int, prefix: str = "", suffix: str = "",
                     bar_length: int = 30) -> None:
        sink = self._sink()
        if sink is None:
            self.fallback.progress_bar(cur_iter, total_iters, prefix, suffix, bar_length)
        else:
            sink.progress(cur_iter, total_iters)


_install_lock = threading.Lock()


def _router() -> _Router:
    with _install_lock:
        current = EspLog.instance
        if isinstance(current, _Router):
            return current
        router = _Router(current if current is not None else EspLog())
        EspLog.set_logger(router)
        return router


@contextlib.contextmanager
def bound(sink: Sink) -> Iterator[None]:
    """Sends esptool's output from this thread to `sink` while the block runs."""
    router = _router()
    previous = router._sink()
    router.local.sink = sink
    try:
        yield
    finally:
        router.local.sink = previous


def quiet() -> contextlib.AbstractContextManager[None]:
    """Drops esptool's output from this thread while the block runs."""
    return bound(_Discard())
