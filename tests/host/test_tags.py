"""Device tags (musket.registry.tags) and `musket registry tag`: all or nothing, audited, and
the cohort a bulk SIM change takes from them (`musket fleet sims pause --tag`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fleet"))

from fleethelp import ACTOR, DEVICES, device_iccid, seed  # noqa: E402

from musket.cli import main  # noqa: E402
from musket.errors import ExitCode  # noqa: E402
from musket.registry import Registry, tags  # noqa: E402


@pytest.fixture
def registry(tmp_path):
    with Registry.open(tmp_path / "reg.sqlite", migrate=True) as r:
        seed(r, tmp_path)
        yield r


def cli(registry, *args):
    return CliRunner().invoke(main, [*args, "--registry", registry.url])


def test_tags_are_added_once_removed_and_audited(registry):
    assert tags.add(registry.engine, "pilot", ["dev-a", "dev-b"], ACTOR) == ["dev-a", "dev-b"]
    assert tags.add(registry.engine, "PILOT", ["dev-b", "dev-c"], ACTOR) == ["dev-c"]
    assert tags.listing(registry.engine) == {"pilot": ["dev-a", "dev-b", "dev-c"]}
    assert tags.remove(registry.engine, "pilot", ["dev-a", "dev-x"], ACTOR) == ["dev-a"]
    assert tags.tagged(registry.engine, ["pilot"]) == ["dev-b", "dev-c"]
    actions = [(e.action, e.subject) for e in registry.audit() if e.action in ("tag", "untag")]
    assert actions == [("tag", "dev-a"), ("tag", "dev-b"), ("tag", "dev-c"), ("untag", "dev-a")]


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 33, "café"])
def test_a_bad_tag_is_refused(registry, bad):
    with pytest.raises(tags.TagError):
        tags.add(registry.engine, bad, ["dev-a"], ACTOR)


def test_an_unknown_device_changes_nothing(registry):
    result = cli(registry, "registry", "tag", "add", "pilot", "dev-a", "dev-nope")
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "dev-nope" in result.output
    assert tags.listing(registry.engine) == {}


def test_the_cli_tags_lists_and_pauses_the_tagged_devices_sims(registry, tmp_path):
    listed = tmp_path / "units.txt"
    listed.write_text("dev-b\n# the second café\ndev-c\n")
    result = cli(registry, "registry", "tag", "add", "cafe-berlin", "--file", str(listed))
    assert result.exit_code == 0 and "2 device(s) tagged" in result.output, result.output
    shown = cli(registry, "registry", "tag", "list", "--json")
    assert json.loads(shown.stdout) == {"cafe-berlin": ["dev-b", "dev-c"]}
    for d in DEVICES:
        registry.set_sim_state(device_iccid(d), "active", "in service", ACTOR)
    paused = cli(registry, "fleet", "sims", "pause", "--tag", "cafe-berlin", "--reason",
                 "closed for the winter", "--json")
    assert paused.exit_code == 0, paused.output
    assert json.loads(paused.stdout)["changed"] == [device_iccid("dev-b"), device_iccid("dev-c")]
    states = {s.iccid: s.state for s in registry.sims()}
    assert states[device_iccid("dev-a")] == "active"
    assert states[device_iccid("dev-b")] == states[device_iccid("dev-c")] == "suspended"
