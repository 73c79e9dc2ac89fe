"""The family-independent modem: its parts joined, its settings from the board and the
scenario, its identities, and the 27.007 identity commands. A family (sim7080.py, sim7600.py,
bg95.py) sets the constants below, its SOCKETS dialect, and adds its own commands as
_at_<name> methods.
"""
from musket_sim.models.modem.at import AtLine
from musket_sim.models.modem.common import OFF, CmdError, digits, luhn
from musket_sim.models.modem.network import Network
from musket_sim.models.modem.power import Power
from musket_sim.models.modem.sockets import Sockets
from musket_sim.models.modem.tcpip import TcpIp
from musket_sim.models.world import US_PER_MS, US_PER_S, Rng

# rat -> (AcT for +CEREG/+COPS, register_s, latency_ms)
_RATS = {"lte-m": (7, 6.0, 100), "nb-iot": (9, 15.0, 400), "lte": (7, 3.0, 50)}


class Modem(Power, AtLine, Network, Sockets, TcpIp):
    # The family-independent modem: power, UART, command line, 27.007 commands, radio, PDP,
    # sockets and byte counts.
    FAMILY = ""
    BOOT_S = 4.0
    POWER_OFF_S = 2.0
    DEFAULT_RAT = "lte-m"
    CMEE_DEFAULT = 0
    BOOT_URCS = ()  # (ms after boot, line) with a SIM
    NO_SIM_URCS = ()
    POWER_DOWN_URC = None
    MANUFACTURER = ""
    MODEL = ""
    REVISION = ""  # the AT+CGMR line
    IMEI_TAC = "86000000"
    LINK_COUNT = 10
    MAX_SEND = 1460
    MAX_READ = 1460
    RX_BUFFER = 8192  # bytes one socket buffers for the firmware
    PDP_MS = 1000  # data attach time
    CODES = {}  # open outcome -> the family's result code
    SOCKETS = None  # the family's socket Dialect

    def __init__(self, world, scenario, board, settings):
        self.world = world
        m = board["modem"]
        pins = board["pins"]
        self.uart_id = m["uart"]
        self.baud = m["baudrate"]
        self.on_ms = m["pwrkey_on_ms"]
        self.off_ms = m["pwrkey_off_ms"]
        self.pwrkey = pins["pwrkey"]
        self.status = pins["status"]
        self.reset_pin = pins.get("reset")
        self.power_pin = pins.get("modem_power")
        self.supply = self.power_pin is None
        sc = scenario
        self.rat = sc.get("rat") or self.DEFAULT_RAT
        act, reg_s, latency_ms = _RATS[self.rat]
        self.act = act
        boot_s = sc.get("boot_s") or min(self.BOOT_S, m["boot_ms"] * 0.9 / 1000)
        self.boot_us = int(boot_s * US_PER_S)
        self.power_off_us = int(min(self.POWER_OFF_S, m["power_off_ms"] / 1000) * US_PER_S)
        reg = sc.get("register_s")
        self.register_us = int((reg_s if reg is None else reg) * US_PER_S)
        self.reply_us = int(sc.get("reply_ms", 5) * US_PER_MS)
        lat = sc.get("latency_ms")
        self.latency_us = int((latency_ms if lat is None else lat) * US_PER_MS)
        self.us_per_byte = 10 * US_PER_S // self.baud
        self.net_apn = sc.get("apn") or ""
        self.operator = sc.get("operator") or "MusketNet"
        self.plmn = sc.get("plmn") or "26201"
        self.rssi = sc.get("rssi", 20)
        self.rsrp = sc.get("rsrp", -95)
        self.rsrq = sc.get("rsrq", -10)
        self.sinr = sc.get("sinr", 12)
        self.roaming = bool(sc.get("roaming"))
        self.hosts = sc.get("hosts") or {}
        self.push_all = bool(sc.get("push"))
        self.events = sc.get("events") or []
        self.sim_present = sc.get("sim_present", True)
        ids = Rng(settings.get("seed", 0) * 7 + 12345)
        body = "894901" + digits(ids, 12)
        self.slot_iccid = sc.get("iccid") or body + luhn(body)
        self.slot_iccid_first = self.slot_iccid
        body = self.IMEI_TAC + digits(ids, 6)
        self.imei = sc.get("imei") or body + luhn(body)
        self.scenario_imsi = sc.get("imsi")
        self.tac = "%04X" % (0x1000 + ids.below(0xE000))
        self.cell = 0x100000 + ids.below(0xE00000)
        self.rng = world.rng
        # the world, as the scenario's events leave it
        self.w_coverage = True
        self.w_deny = False
        self.w_sms_only = False
        self.w_cause = 15
        # The carrier's data stop (a data-limit pause, or a SIM paused by its owner): still
        # registered, no data bearer, AT+CEER says why. Set by a "data_stop" event, or when
        # the SIM's billed bytes reach the scenario's data_limit_bytes.
        self.w_data_stop = False
        self.data_limit = sc.get("data_limit_bytes")
        self.carrier_states = sc.get("carrier_states")  # the carrier's SIM-state file, if any
        self.carrier_stamp = None  # that file's mtime when last read
        self.w_close_next = False
        self.slow_us = 0
        # the modem
        self.state = OFF
        self.hung = False
        self.gen = 0  # bumps at every power change: scheduled work of an old life is void
        self.held_since = {"pwrkey": -1, "reset": -1}  # when a pulsed line went active (us)
        self._init_uart()
        self._init_links()
        self.contexts = {1: sc.get("stale_context") or ""}
        self.nv = {}  # family NV settings (CNCFG APNs)
        self.figures = {
            "family": self.FAMILY, "air_up": 0, "air_down": 0, "payload_up": 0,
            "payload_down": 0, "sockets": [], "uart_rx": 0, "uart_tx": 0, "power_cycles": 0,
            "reboots": 0,
            # Air bytes (up + down) per SIM per UTC day, as the carrier bills them:
            # {iccid: {"YYYY-MM-DD": bytes}} (musket_sim.carrier writes its usage file).
            "billed": {},
        }
        self._volatile_reset()
        self.iccid = self.slot_iccid
        self.imsi = self._imsi_for(self.iccid)

    # -- identities ------------------------------------------------------------------------

    def _imsi_for(self, iccid):
        if self.scenario_imsi and iccid == self.slot_iccid_first:
            return self.scenario_imsi
        r = Rng(int(iccid.rstrip("F")[-12:-1], 16) + 77)  # hex digits too
        return (self.plmn + digits(r, 10))[:15]

    def _volatile_reset(self):
        self.echo = True
        self.cmee = self.CMEE_DEFAULT
        self.reg_n = {"+CREG": 0, "+CGREG": 0, "+CEREG": 0}
        self.cfun = 1
        self.stat = 0
        self.searching = False
        self.reg_gen = 0
        self.loss_gen = 0
        self.pdp_ip = None
        self.pdp_cid = 1
        self.line = bytearray()
        self.data_need = 0
        self.tx_free = 0
        self._tx_purge()
        self._family_reset()

    def _family_reset(self):
        pass

    # -- setup -----------------------------------------------------------------------------

    def start(self, settings):
        w = self.world
        w.attach_uart(self.uart_id, self)
        self._wire_pins()
        self._schedule_events()
        w.figures["modem"] = self.figures
        w.add_poller(self)
        w.boot_hooks.append(self._esp32_boots)
        w.close_hooks.append(self._drop_links)

    # -- 27.007 identities -----------------------------------------------------------------

    def _need_sim(self):
        if not self.sim_present:
            raise CmdError(10)

    def _at_cpin(self, kind, a):
        self._need_sim()
        if kind == "?":
            return ["+CPIN: READY"]
        raise CmdError(3)

    def _at_cgsn(self, kind, a):
        return [self.imei]

    _at_gsn = _at_cgsn

    def _at_cimi(self, kind, a):
        self._need_sim()
        return [self.imsi]

    def _at_cgmi(self, kind, a):
        return [self.MANUFACTURER]

    def _at_cgmm(self, kind, a):
        return [self.MODEL]

    def _at_cgmr(self, kind, a):
        return [self.REVISION]

    _at_gmr = _at_cgmr
