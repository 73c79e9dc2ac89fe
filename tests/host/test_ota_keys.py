"""The key store (musket.ota.keys) and `musket keys`: generate, rotate, retire; private keys in
files of mode 0600, never printed, never in --json."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner

from musket.cli import main
from musket.errors import ExitCode
from musket.ota.keys import ACTIVE, RETIRED, TRUSTED, KeyStore, KeyStoreError, key_id


@pytest.fixture
def store(tmp_path):
    return KeyStore(tmp_path / "keys")


def keys_cli(tmp_path, *args):
    return CliRunner().invoke(main, ["keys", *args, "--keys", str(tmp_path / "keys")])


def test_the_first_key_is_active_and_its_file_is_private(store):
    key = store.generate()
    assert key.state == ACTIVE
    assert key.id == key_id(key.public_key) and len(key.id) == 16
    pem = store.folder / (key.id + ".pem")
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert store.keys() == [key]
    assert store.private_key()[0] == key


def test_generate_twice_is_refused(store):
    store.generate()
    with pytest.raises(KeyStoreError, match="already has keys") as e:
        store.generate()
    assert "rotate" in e.value.hint


def test_rotate_keeps_the_old_key_trusted(store):
    first = store.generate()
    old, new = store.rotate()
    assert old.id == first.id and old.state == TRUSTED
    assert store.active() == new
    assert [k.id for k in store.trusted()] == [first.id, new.id]
    assert store.private_key(first.id)[0].id == first.id  # it can still sign (--sign-with)


def test_retire(store):
    first = store.generate()
    store.rotate()
    with pytest.raises(KeyStoreError, match="the active key"):
        store.retire(store.active().id)
    retired = store.retire(first.id)
    assert retired.state == RETIRED
    assert [k.id for k in store.trusted()] == [store.active().id]
    assert first.id in store.public_keys()  # old bundles can still be checked
    with pytest.raises(KeyStoreError, match="retired"):
        store.private_key(first.id)
    assert store.retire(first.id).state == RETIRED  # again: nothing changes
    with pytest.raises(KeyStoreError, match="no key 0000000000000000"):
        store.retire("0000000000000000")


def test_no_keys_yet_says_what_to_do(store):
    with pytest.raises(KeyStoreError, match="no active key") as e:
        store.active()
    assert "musket keys generate" in e.value.hint


def test_a_damaged_index_is_a_clear_error(store):
    store.generate()
    (store.folder / "index.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        store.keys()


def test_the_index_is_replaced_whole(store):
    store.generate()
    store.rotate()
    assert sorted(p.name for p in store.folder.iterdir() if not p.name.endswith(".pem")) == \
        ["index.json"]


def test_cli_round(tmp_path):
    made = keys_cli(tmp_path, "generate", "--json")
    assert made.exit_code == 0, made.output
    first = json.loads(made.output)
    assert set(first) == {"id", "state", "created", "public_key"}
    rotated = json.loads(keys_cli(tmp_path, "rotate", "--json").output)
    assert rotated["previous"]["id"] == first["id"]
    assert keys_cli(tmp_path, "retire", first["id"]).exit_code == 0
    listed = keys_cli(tmp_path, "list", "--json")
    states = {k["id"]: k["state"] for k in json.loads(listed.output)}
    assert states == {first["id"]: "retired", rotated["active"]["id"]: "active"}
    table = keys_cli(tmp_path, "list")
    assert first["id"] in table.output and "retired" in table.output


def test_no_private_key_material_in_any_output(tmp_path):
    outputs = [keys_cli(tmp_path, "generate", "--json").output,
               keys_cli(tmp_path, "rotate", "--json").output,
               keys_cli(tmp_path, "list", "--json").output,
               keys_cli(tmp_path, "list").output]
    secrets = [p.read_text() for p in (tmp_path / "keys").glob("*.pem")]
    assert len(secrets) == 2
    for secret in secrets:
        body = "".join(secret.strip().splitlines()[1:-1])
        for output in outputs:
            assert "PRIVATE" not in output and body[:24] not in output


def test_cli_errors_carry_the_bad_input_code(tmp_path):
    keys_cli(tmp_path, "generate")
    again = keys_cli(tmp_path, "generate")
    assert again.exit_code == ExitCode.BAD_INPUT
    assert "already has keys" in again.output
