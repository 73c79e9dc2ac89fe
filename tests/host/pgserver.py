"""A throwaway PostgreSQL server for tests: initdb and pg_ctl into a temporary folder, reached
on a unix socket only. As root, the server runs as the `postgres` user (PostgreSQL refuses
root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from musket import system

START_TIMEOUT_S = 30


class Unavailable(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def _bin_dir() -> Path:
    try:
        return Path(os.path.realpath(system.require("pg_ctl"))).parent
    except system.MissingTool as e:
        raise Unavailable(str(e)) from None


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no `postgres` user to run "
                                  "the server as") from None
            if not shutil.which("runuser"):
                raise Unavailable("running as root and `runuser` is missing")
            self.run_as = "postgres"
        self.root = Path(tempfile.mkdtemp(prefix="musket-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            raise Unavailable(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        if self.run_as:
            shutil.chown(self.root, self.run_as, self.run_as)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = f"-k {self.socket_dir} -c listen_addresses='' -F"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", str(START_TIMEOUT_S), "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
