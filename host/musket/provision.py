"""Provisioning one unit on the factory line, over its console.

    from musket.provision import BrokerSettings, provision
    from musket.registry import Registry, default_actor

    with Registry.open() as registry:  # migrated once by `musket registry migrate`
        result = provision("/dev/ttyUSB0", registry,
                           BrokerSettings("mqtt.example.com", ca_pem=open("ca.pem", "rb").read()),
                           default_actor("line-1", "ana"))
        print(result.label)

The unit connects with TLS (port 8883) unless the settings opt out with ``tls=False`` (plain
MQTT on 1883: its credentials then cross the network in clear).

The unit's console is reached through mpremote's serial transport (raw REPL, raw-paste). The
station soft-resets the unit into the raw REPL (boot.py runs, the application does not), reads
the modem's identity (`app.diag.modem`) and what the unit holds (`app.factory.state`), decides
in one registry transaction what the unit is (binding.plan), stages the files the unit needs
under temporary names, renames them into place, and only then commits the registry. A refusal
or failure at any step leaves the registry unchanged and no file half-written on the unit.

Running it again on a provisioned unit finds the same device (by its chip ID and IMEI), sees
that the unit's config and secret match the registry, writes nothing and says so.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from musket import broker as broker_mod
from musket.errors import BadInput, DeviceReportedErrors, MusketError, UnitSilent
from musket.identity import IdentityError, check_iccid, check_imei, check_imsi
from musket.registry import Actor, Registry, RegistryError, binding

# The modem report powers the modem on and may power-cycle it: diag gives up after 60 s on
# the device's clock; this is the longest silence the station accepts on the console.
MODEM_REPORT_TIMEOUT_S = 90
# Reading state and writing a few small files: flash writes, no modem.
FILES_TIMEOUT_S = 30
RAW_REPL_TIMEOUT_S = 15
READ_TIMEOUT_S = 2
CONSOLE_BAUD = 115200
NONCE_BYTES = 16
DEFAULT_MQTT_PORT = broker_mod.MQTT_PORT
DEFAULT_MQTTS_PORT = broker_mod.MQTTS_PORT
_PEM_HEADER = b"-----BEGIN CERTIFICATE-----"


class ProvisionError(MusketError):
    """One unit could not be provisioned; the message names the port and the reason."""


class ProvisionInputError(ProvisionError, BadInput):
    """The station's settings cannot be used (broker host, port, CA, a missing reason)."""


class UnitNotAnswering(ProvisionError, UnitSilent):
    """The unit's console, or its modem, did not answer: worth a retry."""


class UnitReportedError(ProvisionError, DeviceReportedErrors):
    """The unit answered with an error, or with something that is not a valid answer."""


@dataclass(frozen=True)
class BrokerSettings:
    """Where the unit's MQTT client connects. TLS unless `tls` is False, and then `ca_pem`
    (the broker's CA, PEM) is required; `port` defaults to 8883 with TLS, 1883 without."""

    host: str
    port: int | None = None
    tls: bool = True
    ca_pem: bytes | None = None

    def __post_init__(self) -> None:
        if not self.host or len(self.host) > 253:
            raise ProvisionInputError(f"broker host {self.host!r}: expected a host name (1 "
                                      "to 253 characters)")
        port = self.port
        if port is None:
            port = DEFAULT_MQTTS_PORT if self.tls else DEFAULT_MQTT_PORT
            object.__setattr__(self, "port", port)
        if not 0 < port < 65536:
            raise ProvisionInputError(f"broker port {port}: out of range (1 to 65535)")
        if self.tls and not self.ca_pem:
            raise ProvisionInputError(
                "TLS needs the broker's CA certificate: give --ca FILE, or opt out with "
                "--no-tls", hint="units connect with TLS by default; --no-tls is plain MQTT, "
                                 "where their credentials cross the network in clear")
        if self.ca_pem is not None and not self.tls:
            raise ProvisionInputError("a CA certificate was given with --no-tls: drop one of "
                                      "them")
        if self.ca_pem is not None and _PEM_HEADER not in self.ca_pem:
            raise ProvisionInputError("the CA file is not a PEM certificate (no "
                                      f"{_PEM_HEADER.decode()} line)")

    def device_config(self, device_id: str) -> dict:
        """The keys provisioning owns in the unit's /config.json."""
        return {"device_id": device_id, "mqtt_host": self.host, "mqtt_port": self.port,
                "mqtt_tls": int(self.tls)}


@dataclass(frozen=True)
class ProvisionOptions:
    # A unit whose SIM differs from its registered one is a SIM swap: refused unless rebind.
    rebind: bool = False
    reason: str | None = None
    # Where the swapped-out SIM goes: retired (default) or back to inventory.
    old_sim_state: str = "retired"
    # A SIM the vendor's list did not bring is refused unless this is set.
    allow_unknown_sim: bool = False
    id_prefix: str = binding.DEFAULT_ID_PREFIX
    # Draws each character of a new device ID: at random, or from a seeded generator where
    # the same line must give the same IDs (the demo).
    id_choice: Callable[[str], str] = secrets.choice
    # Restart the unit afterwards, so that it runs its application with the new config.
    reset: bool = True

    def __post_init__(self) -> None:
        if self.rebind and not (self.reason and self.reason.strip()):
            raise ProvisionInputError("--rebind needs --reason (it goes into the audit log)")


@dataclass
class ProvisionResult:
    port: str
    device_id: str
    imei: str
    iccid: str
    imsi: str | None
    chip_id: str
    board: str | None
    # provision (a new device), rebind (SIM swap), device-update (files rewritten for a known
    # binding) or unchanged (nothing to do).
    action: str
    written: list[str] = field(default_factory=list)
    previous_iccid: str | None = None

    @property
    def label(self) -> str:
        """The line the label printer gets."""
        return f"{self.device_id} IMEI {self.imei} ICCID {self.iccid}"

    @property
    def summary(self) -> str:
        if self.action == "unchanged":
            return (f"{self.port}: already provisioned as {self.device_id}; nothing changed")
        if self.action == "rebind":
            return (f"{self.port}: {self.device_id} rebound from SIM {self.previous_iccid} to "
                    f"{self.iccid}")
        if self.action == "provision":
            return f"{self.port}: provisioned {self.device_id}"
        return f"{self.port}: {self.device_id}: rewrote {', '.join(self.written)}"

    def as_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


class UnitConsole:
    """The unit's raw REPL through mpremote's serial transport: run code, read its JSON line."""

    def __init__(self, port: str) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self._error = TransportError
        try:
            # A read timeout, so that mpremote's own timeouts hold on a pty too (it reads a
            # pty byte by byte, and without one a silent unit would block the station).
            self.transport = SerialTransport(port, baudrate=CONSOLE_BAUD,
                                             timeout=READ_TIMEOUT_S)
        except TransportError as e:
            raise UnitNotAnswering(f"{port}: cannot open the console: {e}") from None

    def enter(self) -> None:
        # A soft reset into the raw REPL runs boot.py but not the application, so nothing
        # else holds the modem or the files while the station works.
        try:
            self.transport.enter_raw_repl(soft_reset=True, timeout_overall=RAW_REPL_TIMEOUT_S)
        except self._error as e:
            raise UnitNotAnswering(f"{self.port}: no MicroPython REPL answers on the console "
                                   f"({e})") from None

    def call(self, code: str, timeout: float = FILES_TIMEOUT_S) -> dict:
        """Runs `code`, which prints one JSON line last; returns it."""
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout)
        except self._error as e:
            raise UnitNotAnswering(f"{self.port}: the unit stopped answering ({e})") from None
        if err:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
            raise UnitReportedError(f"{self.port}: the unit reported an error: {last[0]}")
        lines = out.decode("utf-8", "replace").strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            raise UnitReportedError(f"{self.port}: unexpected answer from the unit: "
                                    f"{(lines or [''])[-1][:200]!r}") from None

    def reset(self) -> None:
        try:
            self.transport.exec_raw_no_follow("import machine\nmachine.reset()")
        except self._error as e:
            raise UnitNotAnswering(f"{self.port}: reset failed ({e})") from None

    def close(self) -> None:
        try:
            self.transport.close()
        except OSError:
            pass  # the port went away with the unit: nothing left to close


def provision(port: str, registry: Registry, broker: BrokerSettings, actor: Actor,
              options: ProvisionOptions | None = None) -> ProvisionResult:
    """Provisions the unit on `port`; raises ProvisionError (or BindingRefused) with the
    reason when it cannot, leaving the registry and the unit's files as they were."""
    options = options or ProvisionOptions()
    console = UnitConsole(port)
    try:
        console.enter()
        result = _provision(console, registry, broker, actor, options)
        if options.reset:
            console.reset()
        return result
    finally:
        console.close()


def _read_unit(console: UnitConsole, nonce: bytes) -> tuple[binding.Unit, dict]:
    report = console.call("from app import diag\ndiag.modem(False)", MODEM_REPORT_TIMEOUT_S)
    if not report.get("ok"):
        raise UnitNotAnswering(f"{console.port}: the modem does not answer "
                               f"({report.get('error', 'no reason given')}); nothing written",
                               hint="check that the SIM is seated and the antenna attached, "
                                    "power the unit off and on, then run again")
    identity = report.get("identity") or {}
    try:
        iccid = check_iccid(identity.get("iccid"))
        imei = check_imei(identity.get("imei"))
        imsi = check_imsi(identity["imsi"]) if identity.get("imsi") else None
    except IdentityError as e:
        raise UnitReportedError(f"{console.port}: the modem reported a bad identity: {e}; "
                                "nothing written") from None
    state = console.call(f"from app import factory\nfactory.state({nonce.hex()!r})")
    return binding.Unit(iccid, imei, imsi, str(state["chip_id"]), state.get("board")), state


def _provision(console: UnitConsole, registry: Registry, broker: BrokerSettings, actor: Actor,
               options: ProvisionOptions) -> ProvisionResult:
    nonce = secrets.token_bytes(NONCE_BYTES)
    unit, held = _read_unit(console, nonce)
    written: list[str] = []
    try:
        return _bind(console, registry, broker, actor, options, nonce, unit, held, written)
    except RegistryError as e:
        if not written:
            raise
        raise ProvisionError(f"{console.port}: the unit holds its new files "
                             f"({', '.join(written)}) but the registry did not record them "
                             f"({e}); provision the unit again") from None


def _bind(console: UnitConsole, registry: Registry, broker: BrokerSettings, actor: Actor,
          options: ProvisionOptions, nonce: bytes, unit: binding.Unit, held: dict,
          written: list[str]) -> ProvisionResult:
    with registry.transaction() as conn:
        plan = binding.plan(conn, unit, rebind=options.rebind,
                            allow_unknown_sim=options.allow_unknown_sim,
                            id_prefix=options.id_prefix, id_choice=options.id_choice)
        config = broker.device_config(plan.device_id)
        config_changes = {key: [held["config"].get(key), value]
                          for key, value in config.items() if held["config"].get(key) != value}
        changes: dict = {"config": config_changes} if config_changes else {}
        secret_ok = (held.get("mqtt_user") == plan.device_id and plan.secret_check is not None
                     and held.get("proof") == _proof(nonce, plan.secret_check))
        ca_ok = broker.ca_pem is None or held.get("ca") == _sha256(broker.ca_pem)
        new_secret = new_credentials = None
        if not secret_ok:
            new_secret = broker_mod.new_password()
            new_credentials = binding.Credentials(broker_mod.hash_password(new_secret),
                                                  _sha256(new_secret.encode()))
        if not ca_ok:
            changes["ca"] = "written"
        action = binding.apply(conn, plan, unit, actor, new_credentials=new_credentials,
                               reason=options.reason, old_sim_state=options.old_sim_state,
                               changes=changes)
        if changes or new_secret is not None:
            secrets_record = None if new_secret is None else {
                "mqtt_user": plan.device_id, "mqtt_password": new_secret}
            written.extend(_write_files(console, config, secrets_record,
                                        None if ca_ok else broker.ca_pem))
        # Leaving the block commits the registry: only now that the unit holds its files.
    return ProvisionResult(port=console.port, device_id=plan.device_id, imei=unit.imei,
                           iccid=unit.iccid, imsi=unit.imsi, chip_id=unit.chip_id,
                           board=unit.board, action=action, written=written,
                           previous_iccid=plan.swap_from)


def _write_files(console: UnitConsole, config: dict, secrets_record: dict | None,
                 ca_pem: bytes | None) -> list[str]:
    staged = console.call(f"from app import factory\nfactory.stage({config!r}, "
                          f"{secrets_record!r}, {ca_pem!r})")
    if not staged.get("ok"):
        raise UnitReportedError(f"{console.port}: writing the unit's files failed "
                                f"({staged.get('error')}); nothing written")
    done = console.call("from app import factory\nfactory.commit()")
    if not done.get("ok"):
        raise UnitReportedError(f"{console.port}: moving the new files into place failed "
                                f"after {', '.join(done.get('written') or []) or 'none'} "
                                f"({done.get('error')}); the registry is unchanged, provision "
                                "the unit again")
    return list(done.get("written") or [])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _proof(nonce: bytes, secret_check: str) -> str:
    """What a unit holding the secret answers: sha256(nonce + sha256(secret))."""
    return hashlib.sha256(nonce + bytes.fromhex(secret_check)).hexdigest()


__all__ = ["BrokerSettings", "ProvisionError", "ProvisionOptions", "ProvisionResult",
           "RegistryError", "provision"]
