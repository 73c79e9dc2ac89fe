"""The programs musket needs from the operating system, not from PyPI: what they are, where
Debian puts them, and how a fresh machine gets them.

`make test` and `make demo` run this file with the system's Python before the virtual
environment exists (so it uses the standard library only):

    python3 host/musket/system.py

It installs what is missing with apt-get when run as root; otherwise it stops at once with one
line naming the command to run. Tests and services find the programs through `find`/`require`
(PATH first, then Debian's usual folders), never through a hard-coded path.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class SystemTool:
    """One program musket runs, the Debian package that brings it, and where Debian puts it
    when that folder is not on PATH (a glob: PostgreSQL's folder carries its version)."""

    program: str
    package: str
    folders: tuple[str, ...]
    needed_for: str


TOOLS: tuple[SystemTool, ...] = (
    SystemTool("mosquitto", "mosquitto", ("/usr/sbin",),
               "the MQTT broker of the uplink's tests"),
    SystemTool("pg_ctl", "postgresql", ("/usr/lib/postgresql/*/bin",),
               "the PostgreSQL server of the registry's tests (initdb, pg_ctl)"),
    # Found by a script only in RabbitMQ's own folder, so that its neighbours there
    # (rabbitmq-server, rabbitmqctl) are the scripts themselves, not Debian's /usr/sbin
    # wrappers that switch to the rabbitmq user.
    SystemTool("rabbitmq-defaults", "rabbitmq-server", ("/usr/lib/rabbitmq/bin",),
               "the clustered broker of the fleet's scale-out test"),
    SystemTool("chromium", "chromium", ("/usr/bin",),
               "the headless browser of the team pages' tests and bench (driven by Playwright)"),
)
BY_PROGRAM = {tool.program: tool for tool in TOOLS}


class MissingTool(Exception):
    """A program musket needs is not installed; the message names the package to install."""


def find(program: str) -> Path | None:
    """Where `program` is: on PATH, else in one of Debian's folders for it (the newest
    version folder first), else None."""
    found = shutil.which(program)
    if found:
        return Path(found)
    tool = BY_PROGRAM.get(program)
    for pattern in tool.folders if tool else ():
        for folder in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            candidate = Path(folder) / program
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def require(program: str) -> Path:
    """Like `find`, but a missing program raises MissingTool naming the install command."""
    path = find(program)
    if path is None:
        tool = BY_PROGRAM.get(program)
        package = tool.package if tool else program
        raise MissingTool(f"{program} is not installed: run `make test` as root, or "
                          f"`sudo apt-get install -y {package}`")
    return path


def missing_packages(tools: tuple[SystemTool, ...] = TOOLS) -> list[str]:
    """The Debian packages to install so that every tool (and Python's venv) is present."""
    packages = [] if _has_venv() else ["python3-venv"]
    for tool in tools:
        if find(tool.program) is None and tool.package not in packages:
            packages.append(tool.package)
    return packages


def ensure(tools: tuple[SystemTool, ...] = TOOLS, *, is_root: bool | None = None,
           out=sys.stdout) -> int:
    """Installs what is missing (as root) or says in one line what to run. Returns the exit
    status: 0 when everything is present afterwards."""
    if sys.version_info < MIN_PYTHON:
        print(f"musket needs Python {'.'.join(map(str, MIN_PYTHON))} or newer; "
              f"{sys.executable} is {sys.version.split()[0]}", file=out)
        return 1
    packages = missing_packages(tools)
    if not packages:
        return 0
    if is_root is None:
        is_root = os.geteuid() == 0
    command = "apt-get install -y " + " ".join(packages)
    if not is_root or shutil.which("apt-get") is None:
        print(f"musket needs system packages that are missing ({', '.join(packages)}): run "
              f"`sudo {command}`, then run make again", file=out)
        return 1
    print(f"installing system packages: {', '.join(packages)}", file=out, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run(step, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"`{' '.join(step)}` failed ({last}); run `{command}` by hand", file=out)
            return 1
    still = missing_packages(tools)
    if still:
        print(f"installed, but still missing: {', '.join(still)}", file=out)
        return 1
    return 0


def _has_venv() -> bool:
    # Debian splits venv's ensurepip into python3-venv; without it `python3 -m venv` fails.
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        return False
    return True


def _version_key(folder: str) -> tuple[int, ...]:
    digits = [part for part in Path(folder).parts if part.isdigit()]
    return tuple(int(d) for d in digits)


if __name__ == "__main__":
    sys.exit(ensure())
