"""The device console's protocol (docs/console-device.md) against the whole firmware on a
virtual device, under both interpreters: requests typed into its console pty while the
application runs, as `musket console` and a technician send them.

One device per interpreter serves every test of this module, in order: service mode goes on
partway, as it would in a session."""

from __future__ import annotations

import pytest
from consoledev import ConsoleDevice

from musket_sim import VirtualDevice
from musket_sim.device import INTERPRETERS
from musket_sim.scenario import load_scenario
from musket_sim.usage_scenario import load_usage

BOARD = "esp32-sim7080g"
SPAN_S = 6 * 3600  # longer than the tests: they stop the device
SPEED = 5  # virtual seconds per wall second: the watchdog's 30 s are 6 s of wall time
STATUS_KEYS = {"identity", "uptime_s", "reset_cause", "boot_count", "heap", "modem", "uplink",
               "last_telemetry_t", "counters", "sensors", "ota", "log", "health", "diagnosis"}
MODEM_KEYS = {"state", "iccid", "imei", "sim", "registration", "operator", "act", "band",
              "rsrp", "rsrq", "sinr", "rssi_dbm", "attach_history", "escalations",
              "last_error", "ceer"}
HEALTH_KEYS = {"reset_cause", "reboots", "last_crash", "connectivity", "heap_low",
               "iccid_bound", "service_log"}


@pytest.fixture(scope="module", params=INTERPRETERS)
def console(request, tmp_path_factory):
    device = VirtualDevice(BOARD, tmp_path_factory.mktemp(f"console-{request.param}"),
                           interpreter=request.param, modem=load_scenario("good"),
                           usage=load_usage("day"))
    device.create_flash()
    con = ConsoleDevice(device, SPAN_S, SPEED).start()
    con.wait_for("connected", lambda s: s["modem"]["state"] == "connected")
    yield con
    result = con.stop()
    device.close()
    assert result.errors == [], result.errors


def test_help_lists_the_commands(console):
    reply = console.ask("help")
    assert reply["ok"] is True
    assert "selftest" in reply["result"]["commands"]
    assert reply["result"]["service"] is None


def test_an_unknown_command_is_refused_and_named(console):
    reply = console.ask("brew-coffee now")
    assert reply == {"ok": False, "error": "unknown command 'brew-coffee' (help lists them)"}


def test_an_overlong_line_is_refused_and_the_next_one_works(console):
    reply = console.ask("status " + "x" * 200)
    assert reply == {"ok": False, "error": "line too long: at most 127 characters"}
    assert console.ask("help")["ok"] is True


def test_status_has_every_section(console):
    reply = console.ask("status")
    assert reply["ok"] is True
    status = reply["result"]
    assert STATUS_KEYS <= status.keys(), status.keys()
    assert status["identity"]["board"] == BOARD
    assert status["identity"]["firmware"] == "0.0.0"
    assert status["identity"]["image"] is None  # the firmware image flashed on the line
    assert MODEM_KEYS <= status["modem"].keys(), status["modem"].keys()
    assert status["modem"]["iccid"].startswith("89")
    assert HEALTH_KEYS <= status["health"].keys()
    assert status["health"]["reboots"] == {"power-on": 1}
    assert status["reset_cause"] == "power-on"
    assert set(status["sensors"]["readings"]) == {"sht", "flow", "current", "supply"}
    assert status["diagnosis"] == [], status["diagnosis"]


def test_signal_reads_the_modem_now(console):
    reply = console.ask("signal")
    assert reply["ok"] is True
    signal = reply["result"]
    assert signal["registration"]["registered"] is True
    assert signal["rsrp"] == -95 and signal["rsrq"] == -10 and signal["sinr"] == 12
    assert signal["act"] == "LTE-M"


def test_log_shows_recent_lines(console):
    reply = console.ask("log 5")
    assert reply["ok"] is True
    lines = reply["result"]
    assert 0 < len(lines) <= 5
    assert all(line.startswith("[") for line in lines), lines
    assert console.ask("log many") == {"ok": False,
                                       "error": "log: N must be a number of lines"}


def test_counters_and_sensors(console):
    counters = console.ask("counters")["result"]
    assert {"values", "seq", "pending", "rules", "marks"} <= counters.keys()
    assert {"counter": "brews", "every": 200, "at": 0, "action": "reorder-beans"} in \
        counters["rules"]
    sensors = console.ask("sensors")["result"]
    assert sensors["faults"] == {}
    assert 20 < sensors["readings"]["sht"]["t"] < 25


def test_a_read_only_at_command_needs_no_service_mode(console):
    reply = console.ask("at AT+CEREG?")
    assert reply["ok"] is True
    assert reply["result"]["reply"][0].startswith("+CEREG: "), reply


def test_changes_are_refused_outside_service_mode(console):
    for request in ("config set batch_size 4", "at AT+CFUN=0", "counter adjust brews 5 test",
                    "reboot"):
        reply = console.ask(request)
        assert reply == {"ok": False, "error": "refused: a change needs service mode "
                                               "(service on <your name>)"}, request


def test_service_mode_takes_a_name(console):
    assert console.ask("service on")["ok"] is False
    assert console.ask("service on <script>")["ok"] is False
    reply = console.ask("service on Ana Field")
    assert reply == {"ok": True, "result": {"service": "Ana Field"}}


def test_an_invalid_config_value_is_refused_with_the_reason(console):
    assert console.ask("config set batch_size 0") == {
        "ok": False, "error": "batch_size: value 0 is below the minimum 1"}
    assert console.ask("config set batch_size many") == {
        "ok": False, "error": "config: batch_size: expected an integer, got 'many'"}
    assert console.ask("config set no_such_key 1") == {
        "ok": False, "error": "config: 'no_such_key': unknown key"}
    assert console.ask("config set mqtt_host evil.example") == {
        "ok": False, "error": "config: mqtt_host is not settable remotely"}


def test_a_wrong_confirmation_token_changes_nothing(console):
    first = console.ask("config set batch_size 4")
    assert first["ok"] is False and first["summary"] == "config batch_size: 8 -> 4"
    wrong = "000000" if first["confirm"] != "000000" else "000001"
    reply = console.ask(f"config set batch_size 4 confirm={wrong}")
    assert reply["ok"] is False and "does not match" in reply["error"]
    # The token of another request does not do either.
    other = console.ask("config set batch_size 5")
    assert console.ask(f"config set batch_size 4 confirm={other['confirm']}")["ok"] is False
    assert console.ask("config get batch_size")["result"]["value"] == 8


def test_a_confirmed_config_change_shows_the_old_value_and_who_applied_it(console):
    # The usage detector runs and owns brew_ma: applied at once. The uplink, owner of
    # batch_size, does not run on this unprovisioned unit, and heartbeat_s is read at boot.
    reply = console.confirmed("config set brew_ma 1600")
    assert reply == {"ok": True, "result": {"applied": {"brew_ma": 1600},
                                            "old": {"brew_ma": 1500}}}
    assert console.ask("config get brew_ma")["result"] == {
        "key": "brew_ma", "value": 1600, "default": 1500, "applies": "now"}
    assert console.confirmed("config set brew_ma 1500")["ok"] is True
    later = console.confirmed("config set batch_size 4")
    assert later["result"] == {"after_reboot": {"batch_size": 4}, "old": {"batch_size": 8}}
    log = console.ask("log 10")["result"]
    assert any("Ana Field: config brew_ma: 1500 -> 1600" in line for line in log), log


def test_a_token_is_good_once(console):
    first = console.ask("config set batch_size 6")
    token = first["confirm"]
    assert console.ask(f"config set batch_size 6 confirm={token}")["ok"] is True
    again = console.ask(f"config set batch_size 6 confirm={token}")
    assert again["ok"] is False and "does not match" in again["error"]


def test_a_writing_at_command_goes_through_after_confirmation(console):
    first = console.ask("at AT+CGDCONT=1,\"IP\",\"\"")
    assert first["summary"].startswith("AT command AT+CGDCONT=1"), first
    reply = console.ask(f"at AT+CGDCONT=1,\"IP\",\"\" confirm={first['confirm']}")
    assert reply["ok"] is True and reply["result"]["reply"] == [], reply


def test_a_counter_adjustment_is_audited_with_the_technician(console):
    assert console.ask("counter adjust brews -1 wrong")["ok"] is False
    assert console.ask("counter adjust brews x wrong")["ok"] is False
    reply = console.confirmed("counter adjust brews 500 descaled and reset by hand")
    assert reply["ok"] is True
    assert reply["result"]["name"] == "brews" and reply["result"]["value"] == 500
    assert console.ask("counters")["result"]["values"]["brews"] >= 500
    health = console.ask("status")["result"]["health"]
    assert health["service_log"][-1][1] == "Ana Field"
    assert "counter brews" in health["service_log"][-1][2]


def test_simswap_with_the_same_sim_reports_no_change(console):
    reply = console.ask("simswap")
    assert reply["ok"] is True and reply["result"]["changed"] is False
    assert reply["result"]["iccid"].startswith("89")


def test_a_person_gets_readable_lines_and_a_prompt(console):
    console.send(b"\r")
    console.read_until(b"musket> ")
    shown = console.type_line("config get batch_size")
    assert "value: 6" in shown and shown.rstrip().endswith("musket>"), shown
    shown = console.type_line("config set batch_size 7")
    assert "confirm: config batch_size: 6 -> 7" in shown, shown
    shown = console.type_line("nonsense")
    assert "error: unknown command 'nonsense'" in shown, shown


def test_service_off_refuses_changes_again(console):
    assert console.ask("service off") == {"ok": True, "result": {"service": None}}
    assert console.ask("config set batch_size 4")["ok"] is False
