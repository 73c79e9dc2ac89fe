"""`musket keys ...` and `musket ota ...`: thin wrappers over musket.ota (the key store, the
update bundles). Registered on the main group in cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

_KEYS_HELP = ("The key store's folder. Default: $MUSKET_KEYS, else ~/.config/musket/keys.")


def _keys_option(f):
    return click.option("--keys", "keys_dir", default=None, metavar="DIR",
                        type=click.Path(file_okay=False), help=_KEYS_HELP)(f)


def _json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def _store(keys_dir):
    from musket.ota.keys import KeyStore

    return KeyStore(keys_dir)


def _print_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _say(text: str) -> None:
    Console(soft_wrap=True).print(text, markup=False, highlight=False)


@click.group("keys")
def keys_group() -> None:
    """The Ed25519 keys that sign update bundles: one active key signs, trusted keys stay
    trusted by devices, retired keys are dropped. Private keys never leave the store's folder.

    \b
    Example:
      musket keys generate
      musket keys rotate
    """


@keys_group.command("generate")
@_keys_option
@_json_option
def keys_generate(keys_dir, as_json):
    """Create the store's first key, which becomes the active key.

    \b
    Example:
      musket keys generate --keys /secure/musket-keys
    """
    store = _store(keys_dir)
    key = store.generate()
    if as_json:
        _print_json(key.describe())
        return
    _say(f"key {key.id} created ({key.state}) in {store.folder}")


@keys_group.command("list")
@_keys_option
@_json_option
def keys_list(keys_dir, as_json):
    """List the keys: ID, state, created. --json adds the public keys (never a private one).

    \b
    Example:
      musket keys list --json
    """
    store = _store(keys_dir)
    keys = store.keys()
    if as_json:
        _print_json([key.describe() for key in keys])
        return
    table = Table(title=f"keys in {store.folder}")
    for column in ("id", "state", "created"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.id, key.state, key.created,
                      style="bold" if key.state == "active" else None)
    Console().print(table)
    if not keys:
        _say("no keys yet: `musket keys generate` creates the first")


@keys_group.command("rotate")
@_keys_option
@_json_option
def keys_rotate(keys_dir, as_json):
    """Make a new active key; the previous one stays trusted. Devices learn the new key from
    a bundle signed by a key they trust: build the next one with `--sign-with OLD_ID`.

    \b
    Example:
      musket keys rotate
    """
    old, new = _store(keys_dir).rotate()
    if as_json:
        _print_json({"previous": old.describe(), "active": new.describe()})
        return
    _say(f"key {new.id} is now active; {old.id} stays trusted")


@keys_group.command("retire")
@click.argument("key_id")
@_keys_option
@_json_option
def keys_retire(key_id, keys_dir, as_json):
    """Stop trusting a key: the next bundle's list of trusted keys leaves it out.

    \b
    Example:
      musket keys retire 3f9c0a7d5e21b846
    """
    key = _store(keys_dir).retire(key_id)
    if as_json:
        _print_json(key.describe())
        return
    _say(f"key {key.id} is retired")


@click.group("ota")
def ota_group() -> None:
    """Signed update bundles of the application image, full or delta, and of the MicroPython
    firmware image (docs/ota.md).

    \b
    Example:
      musket ota build --version 1.4.0 --board esp32-sim7080g --out app-1.4.0.mkot
      musket ota build --version 1.28.1 --board esp32-sim7080g --image ESP32_GENERIC.bin \\
          --out image-1.28.1.mkot
      musket ota inspect app-1.4.0.mkot
    """


@ota_group.command("build")
@click.option("--version", "version", required=True, help="This release: MAJOR.MINOR.PATCH.")
@click.option("--board", "boards", multiple=True, required=True,
              help="A board the image is for (repeat for several; see `musket boards`).")
@click.option("--interpreter", type=click.Choice(["micropython", "cpython"]),
              default="micropython", show_default=True,
              help="micropython: .mpy bytecode; cpython: sources, for virtual devices.")
@click.option("--min-version", default=None,
              help="Devices running below this version refuse the bundle.")
@click.option("--downgrade", is_flag=True, help="A signed downgrade: devices may install a "
                                                "version lower than theirs.")
@click.option("--base", "base_file", default=None, type=click.Path(dir_okay=False),
              help="Make a delta against this image: the previous version's full bundle, or "
                   "its raw image.")
@click.option("--firmware", "firmware_dir", default=None, type=click.Path(file_okay=False),
              help="The firmware tree to build (default: the repository's firmware/).")
@click.option("--image", "image_file", default=None,
              type=click.Path(dir_okay=False, exists=True),
              help="Bundle this MicroPython firmware binary (a release .bin or an app image) "
                   "for the boards' OTA app slots instead of the application.")
@click.option("--sign-with", default=None, metavar="KEY_ID",
              help="Sign with this trusted key instead of the active one (after a rotation, "
                   "until devices trust the new key).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the bundle.")
@_keys_option
@_json_option
def ota_build(version, boards, interpreter, min_version, downgrade, base_file, firmware_dir,
              image_file, sign_with, out_file, keys_dir, as_json):
    """Build and sign an update bundle of the application image: full, or a delta against
    --base; or, with --image, of a MicroPython firmware binary.

    \b
    Examples:
      musket ota build --version 1.3.0 --board esp32-sim7080g --out app-1.3.0.mkot
      musket ota build --version 1.4.0 --board esp32-sim7080g --base app-1.3.0.mkot \\
          --out app-1.4.0-delta.mkot
      musket ota build --version 1.28.1 --board esp32-sim7080g --image firmware.bin \\
          --out image-1.28.1.mkot
    """
    from musket.ota import release

    store = _store(keys_dir)
    if image_file is not None:
        if base_file or firmware_dir or interpreter != "micropython":
            raise click.UsageError("--image bundles a firmware binary: it takes no --base, "
                             "--firmware or --interpreter")
        made = release.build_image_release(
            store, version=version, boards=list(boards), firmware=Path(image_file),
            min_version=min_version, downgrade=downgrade, sign_with=sign_with)
    else:
        base = release.load_base(base_file, store) if base_file else None
        made = release.build_release(
            store, version=version, boards=list(boards), interpreter=interpreter,
            min_version=min_version, downgrade=downgrade, base=base,
            firmware_root=Path(firmware_dir) if firmware_dir else None, sign_with=sign_with)
    out = Path(out_file)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(made.data)
    tmp.replace(out)
    summary = made.summary()
    if as_json:
        _print_json({**summary, "file": str(out)})
        return
    table = Table(title=f"{out}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("version", summary["version"])
    table.add_row("kind", summary["kind"] + (f" (from {summary['base'].get('version', 'an image')})"
                                             if "base" in summary else "")
                  + (f" (layout {summary['layout']})" if "layout" in summary else ""))
    table.add_row("boards", ", ".join(summary["boards"]) + f" ({summary['interpreter']})")
    table.add_row("image", f"{summary['image_size']:,} bytes")
    table.add_row("payload", f"{summary['payload_size']:,} bytes")
    table.add_row("total", f"{summary['total_size']:,} bytes")
    table.add_row("key", summary["key_id"])
    Console().print(table)


@ota_group.command("inspect")
@click.argument("bundle_file", type=click.Path(dir_okay=False, exists=True))
@_keys_option
@_json_option
def ota_inspect(bundle_file, keys_dir, as_json):
    """Check a bundle (signature by a key of the store, payload, sizes) and show its manifest.

    \b
    Example:
      musket ota inspect app-1.4.0.mkot --json
    """
    from musket.ota import bundle

    store = _store(keys_dir)
    found = bundle.read_bundle(Path(bundle_file).read_bytes(), store.public_keys())
    key = store.get(found.key_id)
    if found.kind != "delta":
        found.image()  # the image the manifest names
    if as_json:
        _print_json({"key_id": key.id, "key_state": key.state, "manifest": found.manifest})
        return
    m = found.manifest
    console = Console(soft_wrap=True)
    kind = m["kind"] + (f" (layout {m['layout']})" if "layout" in m else "")
    lines = [f"version {m['version']}, {kind}, for {', '.join(m['boards'])} "
             f"({m['interpreter']})",
             f"signed by key {key.id} ({key.state}); signature and payload check out"]
    if "base" in m:
        lines.append(f"base: {m['base'].get('version', 'an image')}, {m['base']['size']:,} "
                     f"bytes, sha256 {m['base']['sha256'][:16]}")
    lines.append(f"image {m['image']['size']:,} bytes, payload {m['payload']['size']:,} bytes, "
                 f"total {m['total_size']:,} bytes")
    if "min_version" in m or m.get("downgrade"):
        lines.append(f"min version {m.get('min_version', '-')}, downgrade "
                     f"{'yes' if m.get('downgrade') else 'no'}")
    lines.append(f"trusted keys: {len(m.get('trusted_keys', []))}")
    for line in lines:
        console.print(line, markup=False, highlight=False)
    if m["kind"] == "image":
        return  # one ESP app image: no files to list
    table = Table(title="files")
    for column in ("path", "size", "sha256"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for entry in m.get("files", []):
        table.add_row(entry["path"], f"{entry['size']:,}", entry["sha256"][:16])
    console.print(table)


def _broker_options(f, devices_required=True):
    for option in reversed([
        click.option("--device", "devices", multiple=True, required=devices_required,
                     help="A device ID to offer the bundle to (repeat for several)."),
        click.option("--campaign", required=True,
                     help="A name for this rollout (1-28 letters, digits, _ or -): devices "
                          "report under it, and a repeated offer under it resumes rather "
                          "than restarts."),
        click.option("--broker", required=True, metavar="HOST[:PORT]",
                     help="The MQTT broker the devices use (port 8883 with --ca, else 1883)."),
        click.option("--user", required=True, help="A service user of the broker's ACL."),
        click.option("--password-env", default="MUSKET_MQTT_PASSWORD", show_default=True,
                     metavar="VAR", help="The environment variable holding the user's "
                                         "password."),
        click.option("--ca", "ca_file", default=None,
                     type=click.Path(dir_okay=False, exists=True),
                     help="The CA of the broker's certificate: TLS."),
    ]):
        f = option(f)
    return f


def _bundle_server(broker, user, password_env, ca_file):
    import os

    from musket.ota import transfer

    host, _, port = broker.partition(":")
    password = os.environ.get(password_env)
    if password is None:
        raise transfer.TransferError(f"no password: ${password_env} is not set",
                                     hint=f"export {password_env}=... (the service user's)")
    return transfer.BundleServer(host, int(port or (8883 if ca_file else 1883)), user,
                                 password, ca_file)


def _signed_version(bundle_file, keys_dir) -> tuple[bytes, str]:
    # The bundle's bytes and version, once it checks out against the store's keys.
    from musket.ota import bundle

    data = Path(bundle_file).read_bytes()
    return data, bundle.read_bundle(data, _store(keys_dir).public_keys()).manifest["version"]


@ota_group.command("send")
@click.argument("bundle_file", type=click.Path(dir_okay=False, exists=True))
@_broker_options
@click.option("--until", type=click.Choice(["downloaded", "confirmed"]), default="confirmed",
              show_default=True, help="Wait until every device has the bundle, or runs it.")
@click.option("--timeout", "timeout_s", type=float, default=3600, show_default=True,
              help="Seconds to wait before giving up on the devices still under way.")
@_keys_option
@_json_option
def ota_send(bundle_file, devices, campaign, broker, user, password_env, ca_file, until,
             timeout_s, keys_dir, as_json):
    """Offer a bundle to devices over MQTT and serve it until they run it.

    The devices pull it chunk by chunk, resume after a drop or a reboot, install it at their
    next boot and report how it went. Exit code 1 if a device refused it, rolled it back or
    did not finish in time.

    \b
    Example:
      MUSKET_MQTT_PASSWORD=... musket ota send app-1.4.0.mkot --device dev-0001 \\
          --campaign fix-1-4 --broker mqtt.example.com --user fleet --ca ca.pem
    """
    data, version = _signed_version(bundle_file, keys_dir)
    server = _bundle_server(broker, user, password_env, ca_file)
    try:
        for device_id in devices:
            server.offer(device_id, campaign, version, data)
        finished = server.wait(list(devices), (until,), timeout_s)
    finally:
        server.close()
    rows = [{"device": u.device_id, "state": u.state, "reason": u.reason,
             "bytes_served": u.bytes_served, "resent_chunks": u.resent_chunks}
            for u in (server.updates[d] for d in devices)]
    if as_json:
        _print_json({"campaign": campaign, "version": version, "devices": rows})
    else:
        table = Table(title=f"campaign {campaign}: {version} to {len(rows)} device(s)")
        for column in ("device", "state", "bytes served", "chunks sent again", "reason"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["device"], row["state"], f"{row['bytes_served']:,}",
                          str(row["resent_chunks"]), row["reason"] or "")
        Console().print(table)
    if not finished or any(r["state"] in ("rolled_back", "rejected") for r in rows):
        raise SystemExit(1)


def _campaign_store(location):
    from musket.ota.campaign import CampaignStore
    from musket.registry import Registry

    return CampaignStore(Registry.open(location).engine)


def _registry_option(f):
    return click.option("--registry", "location", default=None, metavar="FILE|URL",
                        help="Registry: a SQLite file or a PostgreSQL URL. Default: "
                             "$MUSKET_REGISTRY, else ./musket-registry.sqlite.")(f)


@ota_group.command("publish")
@click.argument("bundle_file", type=click.Path(dir_okay=False, exists=True))
@lambda f: _broker_options(f, devices_required=False)
@click.option("--board", "boards", multiple=True,
              help="Add every device of the registry built on this board (repeat for "
                   "several), after the --device ones.")
@click.option("--tag", "tags", multiple=True,
              help="Add every device of the registry carrying this tag (repeat for several; "
                   "`musket registry tag`), after the --board ones.")
@click.option("--stages", default="1,25%,100%", show_default=True,
              help="How far each stage reaches: a count or a share of the devices, comma "
                   "separated; a stage starts once the one before ended well.")
@click.option("--abort-after", type=int, default=0, show_default=True,
              help="Failures (rolled back, refused, no result in time) a stage tolerates; "
                   "one more aborts the campaign.")
@click.option("--stage-timeout", "stage_timeout_s", type=float, default=3600,
              show_default=True, help="Seconds a stage's devices have to report a result.")
@_registry_option
@_keys_option
@_json_option
def ota_publish(bundle_file, devices, boards, tags, campaign, broker, user, password_env,
                ca_file, stages, abort_after, stage_timeout_s, location, keys_dir, as_json):
    """Roll a bundle out to devices in stages, recorded in the registry.

    The cohort is the --device ones, then the registry's devices on each --board, then those
    carrying each --tag (`musket registry tag`). The first
    stage's devices (the canary) get the bundle first; each next stage only once every device
    of the one before confirmed it or no more than --abort-after failed. Exit code 1 if the
    campaign was aborted.

    \b
    Example:
      MUSKET_MQTT_PASSWORD=... musket ota publish app-1.4.0.mkot --campaign fix-1-4 \\
          --device dev-0001 --device dev-0002 --stages 1,100% --broker mqtt.example.com \\
          --user fleet --ca ca.pem
    """
    from musket.ota import campaign as campaigns

    data, version = _signed_version(bundle_file, keys_dir)
    store = _campaign_store(location)
    cohort = store.cohort(list(devices), list(boards), list(tags))
    by_stage = campaigns.plan(cohort, stages.split(","))
    store.create(campaign, version, data, stages.split(","), abort_after, by_stage)
    server = _bundle_server(broker, user, password_env, ca_file)
    try:
        def said(device, state, reason):
            if not as_json:
                _say(f"{device}: {state}{': ' + reason if reason else ''}")

        ended = campaigns.run(store, server, campaign, version, data, by_stage, abort_after,
                              stage_timeout_s, said)
    finally:
        server.close()
    _show_campaign(store.get(campaign), as_json)
    if ended != "completed":
        raise SystemExit(1)


def _show_campaign(found: dict, as_json: bool) -> None:
    if as_json:
        _print_json(found)
        return
    _say(f"campaign {found['name']}: {found['version']}, stages {','.join(found['stages'])}, "
         f"{found['state']}{': ' + found['reason'] if found['reason'] else ''}")
    table = Table()
    for column in ("device", "stage", "state", "reason"):
        table.add_column(column)
    for d in found["devices"]:
        table.add_row(d["device_id"], str(d["stage"]), d["state"], d["reason"] or "")
    Console().print(table)


@ota_group.command("status")
@click.option("--campaign", required=True, help="The campaign's name.")
@_registry_option
@_json_option
def ota_status(campaign, location, as_json):
    """Show a campaign and where each of its devices stands.

    \b
    Example:
      musket ota status --campaign fix-1-4 --json
    """
    _show_campaign(_campaign_store(location).get(campaign), as_json)


@ota_group.command("abort")
@click.option("--campaign", required=True, help="The campaign's name.")
@click.option("--reason", required=True, help="Why, for the record.")
@_registry_option
def ota_abort(campaign, reason, location):
    """Stop a running campaign: no device not yet offered the bundle will be.

    \b
    Example:
      musket ota abort --campaign fix-1-4 --reason "support calls from the canary"
    """
    from musket.ota.campaign import CampaignRefused

    store = _campaign_store(location)
    state = store.state(campaign)  # an unknown name is refused
    if state != "running":
        raise CampaignRefused(f"campaign {campaign} is {state}: there is nothing to abort")
    store.finish(campaign, "aborted", reason)
    _say(f"campaign {campaign}: aborted; no device not yet offered the bundle will be")
