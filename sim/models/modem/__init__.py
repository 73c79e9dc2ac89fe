"""A cellular modem on the virtual board's modem UART.

Runs in the host runner's process, coupled to the device's UART and pins. One model, four AT
dialects (SIM7080G "sim7080", its older sibling SIM7000 "sim7000", SIM7600/A7670 "sim7600",
Quectel BG95/BG96 "bg95"), a radio and network driven by a scenario, and TCP sockets carried
to real sockets on the host. Its parts:
  power.py    PWRKEY, RESET, STATUS and modem_power; boot and power-down; the ESP32's resets
  at.py       the UART at wire speed and the command line (V.250 basics, echo, CME errors)
  network.py  registration, signal, PDP, and the scenario's events
  tcpip.py    the sockets on real host sockets, and the air-byte accounting
  sockets.py  the socket commands and URCs, one shape for every family (a family's Dialect)
  base.py     the parts joined into the family-independent Modem
  sim7080.py, sim7600.py, bg95.py  the families: constants, reply formats, their own commands

Scenario (a JSON-able dict, checked and defaulted by musket_sim.scenario.load_scenario; every
field is optional, the defaults are a good network):
  family          "sim7080" | "sim7600" | "bg95" | "sim7000"; default: the board's
  sim_present     false: no SIM ("+CPIN: NOT INSERTED" at boot, AT+CPIN? fails with CME
                  error 10, never registers)
  iccid, imei, imsi  identities; default: derived from the device seed (ICCID 19 digits from 89,
                  IMEI 15 digits with its Luhn check digit, IMSI = plmn + 10 digits); an
                  ICCID is given as the SIM reports it, hex digits and an F pad included
  apn             the APN the network accepts; "" or absent: any. An empty APN in the modem gets
                  the network's default and works; another APN makes data attach fail
  stale_context   APN of a context 1 left in the modem's NV at first power-on (default: "")
  operator, plmn  "MusketNet", "26201"
  rat             "lte-m" | "nb-iot" | "lte"; default: lte for sim7600, lte-m otherwise
  rssi            AT+CSQ value 0..31 (default 20); rsrp, rsrq, sinr in dBm/dB (-95, -10, 12)
  roaming         registered as roaming (stat 5) instead of home (stat 1)
  push            bg95: sockets push received data ("+QIURC: "recv",<id>,<len>" and the
                  bytes, direct push) whatever access mode they were opened in, as after
                  AT+QISWTMD
  register_s      virtual seconds from radio on to registered (lte-m 6, nb-iot 15, lte 3)
  boot_s          virtual seconds from PWRKEY release to the UART answering; default the
                  family's typical time (sim7080 4, sim7600 12, bg95 3) capped at 0.9 x the
                  board's boot_ms, so that a firmware waiting boot_ms finds it ready
  reply_ms        reply delay (default 5); latency_ms one way over the air (lte-m 100, nb-iot
                  400, lte 50)
  hosts           {"name": "127.0.0.1[:port]"}: names the sim resolves, to loopback only
  data_limit_bytes  the carrier's data limit: once the SIM's billed air bytes (up + down, the
                  run's "billed" figures) reach it, the carrier stops its data as the
                  data_stop event does (a data-limit pause)
  carrier_states  path of the carrier's SIM-state file (musket_sim.carrier): when the SIM
                  uses data, a state other than "active" stops its data as data_stop does,
                  and "active" again lets it flow (`musket fleet sims pause --carrier-states`)
  events          [{"at": <s>, <what>: <value>, ...}], "at" in virtual seconds on the device
                  clock (a fresh device starts at 0; settings "run_start_us", if the host sets
                  it, moves the origin), what:
    coverage false|true   lose (stat 2, searching) / regain coverage; PDP and sockets are lost
                          when coverage stays away 8 s (family URCs)
    deny true|false       registration denied (stat 3) until cleared; under AT+CEREG=3 the
                          +CEREG lines carry the reject cause, and AT+CEER says it in words
    reject_cause N        the EMM cause of a denial (default 15, no suitable cells in
                          tracking area)
    sms_only true|false   stat 6 (7 roaming): looks attached, data attach fails, data is lost
    hang true             the modem stops answering until a power cycle or the RESET line
    drop_data true        the network ends the data session: sockets and PDP lost, still
                          registered
    data_stop true|false  the carrier stops (or restarts) the SIM's data, as for a paused SIM:
                          still registered, PDP and sockets lost, no PDP activation while
                          stopped; AT+CEER then says "Requested service option not
                          subscribed" (ESM cause 33)
    drop_sockets true     the modem loses its sockets without a word (no URC): the next send
                          on one gets the family's error where a ">" prompt was expected
    close_after_open true the network closes the next connection as soon as it opens: the
                          open's result, and right behind it the family's close URC
    modem_reset true      the modem restarts by itself (brown-out): sockets, PDP and settings
                          lost, its boot URCs (RDY...) again
    garbage "<text>"      bytes on the UART ("hex:0d0aff..." for raw bytes)
    garbage_bytes N       N random bytes on the UART
    slow_ms N             every reply N ms later from now on (0 ends it)
    sim_swap "<iccid>"    a new SIM in the slot, read at the next modem power-on
"""
from musket_sim.models.modem.bg95 import Bg95
from musket_sim.models.modem.sim7080 import Sim7000, Sim7080
from musket_sim.models.modem.sim7600 import Sim7600

FAMILIES = {"sim7080": Sim7080, "sim7600": Sim7600, "bg95": Bg95, "sim7000": Sim7000}


def install(world, settings):
    # The modem on the board, attached to its world before the device's first boot.
    scenario = settings.get("modem") or {}
    board = settings["board_device"]
    family = scenario.get("family") or board["modem"]["family"]
    modem = FAMILIES[family](world, scenario, board, settings)
    modem.start(settings)
    return modem
