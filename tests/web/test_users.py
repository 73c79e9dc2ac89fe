"""Operators of the team pages: `musket fleet web user add` through click's runner, the stored
hash, the audit row, and what a bad name, role or password gets."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from musket.cli import main
from musket.errors import ExitCode
from musket.registry import Registry
from musket.registry.schema import audit
from musket.registry.web_schema import web_users
from musket.web import users

PASSWORD = "correct horse battery"


@pytest.fixture
def location(tmp_path):
    location = str(tmp_path / "registry.sqlite")
    Registry.open(location, migrate=True).close()
    return location


def _add(location, *args, env=None, input=None):  # noqa: A002 - click's name
    return CliRunner().invoke(main, ["fleet", "web", "user", "add", *args,
                                     "--registry", location, "--operator", "lead"],
                              env=env, input=input)


def test_user_add_from_an_env_var_stores_only_a_hash_and_audits(location):
    result = _add(location, "ana", "--role", "operations", "--password-env", "WEB_PW",
                  env={"WEB_PW": PASSWORD})
    assert result.exit_code == 0, result.output
    assert result.output == "web user ana: role operations\n"
    with Registry.open(location) as registry:
        with registry.engine.connect() as conn:
            stored = conn.execute(select(web_users)).one()
            row = conn.execute(select(audit).where(audit.c.action == "web-user")).one()
        assert users.login(registry.engine, "ana", PASSWORD) == users.WebUser("ana",
                                                                               "operations")
        assert users.login(registry.engine, "ana", PASSWORD + "x") is None
        assert users.login(registry.engine, "nobody", PASSWORD) is None
    assert PASSWORD not in stored.password_hash and stored.password_hash.startswith("scrypt$")
    assert (row.subject, row.operator) == ("ana", "lead")
    assert PASSWORD not in row.changes and stored.password_hash not in row.changes
    assert json.loads(row.changes) == {"role": [None, "operations"]}


def test_user_add_prompts_for_the_password_without_echoing_it(location):
    result = _add(location, "ben", "--role", "finance", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with Registry.open(location) as registry:
        assert users.login(registry.engine, "ben", PASSWORD).role == "finance"


@pytest.mark.parametrize("args, env, says", [
    (["cat", "--role", "janitor"], {"P": PASSWORD}, "unknown role 'janitor'"),
    (["cat", "--role", "finance"], {"P": "short"}, "shorter than 10"),
    (["two words", "--role", "finance"], {"P": PASSWORD}, "no spaces"),
    (["cat", "--role", "finance"], {}, "$P is not set"),
])
def test_bad_user_input_is_one_clear_error_and_adds_nobody(location, args, env, says):
    result = _add(location, *args, "--password-env", "P", env=env)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert says in result.output
    assert PASSWORD not in result.output
    with Registry.open(location) as registry:
        assert users.users(registry.engine) == []


def test_roles_decide_the_changes():
    may = {role: {c for c in users.PERMISSIONS if users.WebUser("x", role).may(c)}
           for role in users.ROLES}
    assert may == {"engineering": set(), "finance": {"sims.plan"},
                   "operations": {"sims.lifecycle", "orders.state", "sims.plan"},
                   "customer_success": {"orders.state"},
                   "admin": {"sims.lifecycle", "orders.state", "sims.plan"}}


def test_the_documented_role_table_is_the_code_table():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "web.md").read_text()
    section = page.split("## Roles", 1)[1]
    lines = [line for line in section[section.index("| change"):].split("\n\n", 1)[0]
             .splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    assert set(header) == set(users.ROLES)
    documented = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        documented[cells[0]] = {role for role, cell in zip(header, cells[1:], strict=True)
                                if cell == "yes"}
    changes = {"SIM lifecycle": "sims.lifecycle", "order state": "orders.state",
               "SIM plan": "sims.plan"}
    got = {changes[next(c for c in changes if row.startswith(c))]: roles
           for row, roles in documented.items()}
    assert got == {c: set(r) for c, r in users.PERMISSIONS.items()}
