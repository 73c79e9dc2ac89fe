"""A cellular modem on the virtual board's modem UART.

Runs in the host runner's process, coupled to the device's UART and pins. One model, four AT
dialects (SIM7080G "sim7080", SIM7600/A7670 "sim7600", Quectel BG95/BG96 "bg95", and the SIM7080's
older sibling SIM7000 "sim7000" in modem_sim7000.py), a radio and
network driven by a scenario, and TCP sockets carried to real sockets on the host.

Power and pins (from the board): asserting PWRKEY for at least pwrkey_on_ms switches the modem
on (judged when the key is released); for at least pwrkey_off_ms switches it off. After boot_s
the modem drives STATUS active, sends its boot URCs and answers AT; after an off pulse (or
AT+CPOWD / AT+CPOF / AT+QPOWD) it sends the family's power-down URC, if it has one, and STATUS
falls power_off_s later (sim7080 2 s, sim7600 3 s, bg95 1.5 s, at most the board's
power_off_ms); meanwhile it answers nothing. A RESET pulse of at least 100 ms reboots it; a
modem_power line, when the board has one, must be active for the modem to have any power
(its falling edge cuts it at once). Power loss loses every volatile thing (sockets, PDP,
registration, ATE/CMEE); PDP context definitions (CGDCONT, CNCFG, QICSGP) are kept, as in the
modem's NV.
An ESP32 reset, watchdog or deep sleep does not touch the modem: it runs on the host, beside the
device (musket_sim.coupling), and keeps its state, sockets included; a power-on boot, or a
board with a modem_power line (the enable line falls while the ESP32 resets), finds it off.

UART: every reply and URC is framed "\\r\\n<line>\\r\\n" and reaches the firmware at the wire
speed of the board's baud rate, in chunks of 64 bytes, so the firmware's rxbuf fills as it
would. Echo (ATE1, the power-on default) echoes each command line and the data written after a
">" prompt. A firmware UART at another baud rate garbles both directions.

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

Data path: opening a socket connects a real non-blocking TCP socket to host:port; only
127.0.0.0/8 and "localhost" (and scenario hosts mapping to them) are allowed: another address
fails with the family's connect-failure code, another name with its DNS-failure code, and no
traffic leaves the machine. The open result comes one round trip (2 x latency) later. Bytes the
firmware sends reach the real socket latency_ms later; bytes from it reach the modem's buffer
latency_ms after they arrive, announced by the family's data URC when the buffer was empty (no
new URC until the firmware has read it all); a remote close gives the family's close URC after
the data before it. At most RX_BUFFER bytes wait per socket; beyond that the host socket is
not read (the TCP window closes). UDP is not modelled: an open asks for TCP. Virtual time does
not wait for real servers, except right after the firmware sent on a socket: then the clock
holds (up to 200 ms of real time) for the peer's answer, and up to 4 x 10 ms for what the peer
sends right behind it, so that a local server answers in virtual time as it would over the air.
The model is another chip: its buffers (UART transmit queue, socket receive and send rings, the
read and send staging buffers, the report's socket entries) are made when it starts, on the
sim's side of the heap, and reused, so that its data path does not allocate from the
firmware's share in steady state.

Byte counting (counted in extras["modem"], reported per boot in RunResult.modem):
  payload_up/down  application bytes the firmware sent / the firmware's socket received
  air_up/down      IP bytes over the air, by this model:
    every TCP segment carries IPv4 20 + TCP 20 + timestamp option 12 = 52 bytes of headers;
    a send of P bytes is ceil(P / 1380) segments (MSS 1380: LTE MTU 1500 less 40 B of
      headers, 12 B of options and 68 B of PDCP/GTP/IPsec slack), up P + 52 per segment,
      and the peer acknowledges every segment with a pure ACK of 52 bytes down;
    data from the peer counts the same in the other direction (a burst is one read of the
      host socket), each segment acknowledged by a 52-byte ACK up; no delayed or piggy-backed
      ACKs;
    open: SYN 60 up (20 B of options: MSS, SACK-permitted, timestamps, window scale),
      SYN-ACK 60 down, ACK 52 up; refused: SYN 60 up, RST 40 down;
    close (by either side): FIN + ACK each way, 104 up and 104 down;
    sockets lost with the network, or refused/unresolved by the sim, count nothing more;
    DNS, PDP signalling and keep-alives are not counted.
  So an echo of P bytes on a fresh socket that the server then closes is
    up 60 + 52 + (P + 52) + 52 + 104 = P + 320 and down 60 + 52 + (P + 52) + 104 = P + 268.
  uart_rx / uart_tx  bytes the modem received from / sent to the firmware (not air bytes).
  Also: family, sockets (one entry per connection attempt that reached a host socket, the
  last 50), power_cycles (power-ons this boot), reboots (RESET line, AT+CRESET, AT+CFUN=1,1).
"""
import binascii
import select
import socket
import time

from musket_sim.models.world import NET_WAIT_MS, Rng

_PWRON_RESET = 1  # machine.PWRON_RESET: the board was powered up

_bselect = select
_POLLIN = _bselect.POLLIN
_POLLOUT = _bselect.POLLOUT
_POLLERR = _bselect.POLLERR
_POLLHUP = _bselect.POLLHUP

_US_PER_MS = 1000
_US_PER_S = 1000000

# The over-the-air byte model (see the module docstring).
SEGMENT_OVERHEAD = 52  # IPv4 20 + TCP 20 + timestamps 12
MSS = 1380
SYN_BYTES = 60
RST_BYTES = 40
CLOSE_BYTES = 104  # each way: FIN + ACK

_EAGAIN = 11
_EINPROGRESS = 115
_CONNECT_WAIT_MS = 500  # real wait for a loopback connect to complete or fail
_GRACE_MS = 10  # after a peer's answer, real wait for what it sends right behind it
_GRACE_ROUNDS = 4
_UART_CHUNK = 64  # bytes delivered to the firmware's UART per wire-time step
# The model stands for another chip: its buffers are allocated once, when the model starts (on
# the sim's side of the heap), and reused, so that its data path does not allocate from, or
# fragment, the firmware's heap.
_UART_TX_BUFFER = 8192  # replies, URCs and pushed data waiting for the wire
_UART_TX_SEGMENTS = 64  # writes (replies, URCs) waiting for the wire at once
_UP_BUFFER = 4096  # per socket: bytes sent by the firmware, still in the air
_LINK_BUFFERS = 2  # sockets whose buffers are made at model start; more get theirs at open
_RECV_PIECE = 128  # bytes per read of a host socket under MicroPython (see _recv_into)
_PUSH_HEAD = 48  # room kept in the UART queue for the header of each pushed arrival
_LINE_MAX = 556  # longest command line the modem keeps
_RESET_MIN_MS = 100  # shortest RESET pulse the model takes
_DATA_LOSS_S = 8  # coverage gone this long: PDP context and sockets are lost
_SOCKETS_KEPT = 50  # per-socket figures kept in the report
_REBOOT_MS = 300  # from AT+CRESET / AT+CFUN=1,1 to the restart

_OFF = 0
_BOOTING = 1
_ON = 2
_STOPPING = 3

_L_OPEN = 1
_L_CLOSED = 2  # closed by the peer; buffered data still readable
_L_LOST = 3  # gone with the network or the power

# rat -> (AcT for +CEREG/+COPS, register_s, latency_ms)
_RATS = {"lte-m": (7, 6.0, 100), "nb-iot": (9, 15.0, 400), "lte": (7, 3.0, 50)}

_CME_TEXT = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    30: "no network service", 50: "incorrect parameters", 100: "unknown",
}

_DEFER = object()  # a handler that sends its final result itself

# EMM causes (3GPP TS 24.301 annex A) as AT+CEER words them
_EMM_CAUSES = {
    3: "Illegal UE", 7: "EPS services not allowed", 11: "PLMN not allowed",
    12: "Tracking area not allowed", 13: "Roaming not allowed in this tracking area",
    15: "No suitable cells in tracking area",
}


class _CmdError(Exception):
    # A command fails: code None is a plain ERROR, a number a +CME ERROR per AT+CMEE.
    pass


def _luhn(body):
    total = 0
    i = 0
    for ch in reversed(body):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        i += 1
    return str((10 - total % 10) % 10)


def _digits(rng, n):
    return "".join([str(rng.below(10)) for _ in range(n)])


def _split_args(text):
    # Comma-separated parameters, quotes removed; commas inside quotes belong to the value.
    out = []
    cur = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _split_commands(text):
    # "+CMEE=2;+CEREG=2" -> ["+CMEE=2", "+CEREG=2"]; semicolons inside quotes stay.
    out = []
    start = 0
    quoted = False
    for i in range(len(text)):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [c.strip() for c in out if c.strip()]


def _is_ipv4(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def _arg_int(args, i, default=None, low=None, high=None):
    if i >= len(args) or args[i] == "":
        if default is None:
            raise _CmdError(50)
        return default
    try:
        v = int(args[i])
    except ValueError:
        raise _CmdError(50)
    if (low is not None and v < low) or (high is not None and v > high):
        raise _CmdError(50)
    return v


def _arg(args, i, default=None):
    if i >= len(args):
        if default is None:
            raise _CmdError(50)
        return default
    return args[i]


def _ring_put(ring, pos, src, n):
    # Copies the n bytes of src into the ring (a memoryview) from pos on, wrapping at its end.
    first = len(ring) - pos
    if n <= first:
        ring[pos:pos + n] = src
    else:
        src = memoryview(src)
        ring[pos:] = src[:first]
        ring[:n - first] = src[first:n]


def _ring_get(ring, pos, dst, n):
    # Copies n bytes from the ring at pos on (wrapping at its end) into dst[:n].
    first = len(ring) - pos
    if n <= first:
        dst[:n] = ring[pos:pos + n]
    else:
        dst[:first] = ring[pos:]
        dst[first:n] = ring[:n - first]


def _recv_into(sock, view):
    # Reads from a non-blocking socket into view, as one recv would: -> bytes read, 0 at the end
    # of the stream (or an error), None when nothing is waiting.
    if hasattr(sock, "recv_into"):
        try:
            return sock.recv_into(view)
        except OSError as e:
            return None if e.args[0] == _EAGAIN else 0
    # MicroPython's sockets have no recv_into, and their readinto reads until the view is full
    # and loses what it read if the connection then fails (a reset right behind the data):
    # small recvs instead, each one read, their pieces garbage at once.
    got = 0
    n = len(view)
    while got < n:
        want = min(_RECV_PIECE, n - got)
        try:
            piece = sock.recv(want)
        except OSError as e:
            if got:
                return got
            return None if e.args[0] == _EAGAIN else 0
        k = len(piece)
        view[got:got + k] = piece
        got += k
        if k < want:
            break  # all there was (or the end of the stream, seen by the next read)
    return got


class _Link:
    # One socket of the modem, and the real TCP socket behind it.
    def __init__(self, lid, host, port):
        self.id = lid
        self.host = host
        self.port = port
        self.sock = None
        self.fd = -1
        self.state = _L_OPEN
        # Down: a ring of RX_BUFFER bytes; rx_len bytes from rx_head on are readable, the
        # inflight bytes behind them were read from the host socket and are still in the air.
        self.rx = None
        self.rx_head = 0
        self.rx_len = 0
        self.inflight = 0
        # Up: a ring of _UP_BUFFER bytes; up_len bytes from up_head on were sent by the
        # firmware, the first up_ready of them have reached the peer's side (the host socket
        # has not taken them yet).
        self.up = None
        self.up_head = 0
        self.up_len = 0
        self.up_ready = 0
        self.heads = 0  # arrivals in the air (each a header when pushed)
        self.up_due = 0
        self.down_due = 0
        self.notified = False  # data URC sent, buffer not yet read empty
        self.expect = False  # a reply is expected on the host socket
        self.push = False  # data pushed to the UART instead of buffered
        self.sent = 0
        self.received = 0
        self.read = 0
        self.stats = None  # the socket's entry in the report (Modem._stats_entry)


class Modem:
    # The family-independent modem: power, UART, command line, 27.007 commands, radio, PDP,
    # sockets and byte counts. A family subclass sets the constants below and adds its commands
    # as _at_<name> methods and its URCs.
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
        self.boot_us = int(boot_s * _US_PER_S)
        self.power_off_us = int(min(self.POWER_OFF_S, m["power_off_ms"] / 1000) * _US_PER_S)
        reg = sc.get("register_s")
        self.register_us = int((reg_s if reg is None else reg) * _US_PER_S)
        self.reply_us = int(sc.get("reply_ms", 5) * _US_PER_MS)
        lat = sc.get("latency_ms")
        self.latency_us = int((latency_ms if lat is None else lat) * _US_PER_MS)
        self.us_per_byte = 10 * _US_PER_S // self.baud
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
        body = "894901" + _digits(ids, 12)
        self.slot_iccid = sc.get("iccid") or body + _luhn(body)
        self.slot_iccid_first = self.slot_iccid
        body = self.IMEI_TAC + _digits(ids, 6)
        self.imei = sc.get("imei") or body + _luhn(body)
        self.scenario_imsi = sc.get("imsi")
        self.tac = "%04X" % (0x1000 + ids.below(0xE000))
        self.cell = 0x100000 + ids.below(0xE00000)
        self.rng = world.rng
        # the world, as the scenario's events leave it
        self.w_coverage = True
        self.w_deny = False
        self.w_sms_only = False
        self.w_cause = 15
        self.w_close_next = False
        self.slow_us = 0
        # the modem
        self.state = _OFF
        self.hung = False
        self.gen = 0  # bumps at every power change: scheduled work of an old life is void
        self.press_us = -1
        self.reset_us = -1
        self.tx_free = 0
        # The UART transmit queue: tx_len bytes from tx_head on, in writes (segments) that each
        # start on the wire at seg_due, at seg_upb microseconds a byte; seg_sent bytes of the
        # first are delivered.
        self.tx_ring = memoryview(bytearray(_UART_TX_BUFFER))
        self.tx_head = 0
        self.tx_len = 0
        self.seg_due = [0] * _UART_TX_SEGMENTS
        self.seg_len = [0] * _UART_TX_SEGMENTS
        self.seg_upb = [0] * _UART_TX_SEGMENTS
        self.seg_first = 0
        self.seg_count = 0
        self.seg_sent = 0
        chunk = memoryview(bytearray(_UART_CHUNK))
        self.chunk = chunk
        self.chunk_views = [chunk[:k] for k in range(_UART_CHUNK + 1)]
        self.pump_at = -1
        self.pump_cb = self._pump
        self.line = bytearray()
        self.data_need = 0
        self.data_got = 0
        self.data_buf = memoryview(bytearray(self.MAX_SEND))
        self.data_done = None
        # Socket data read for the firmware within one command line (chained reads included).
        self.read_buf = memoryview(bytearray(2 * self.MAX_READ))
        self.read_used = 0
        self.spare_stats = []
        for _ in range(_SOCKETS_KEPT):
            self.spare_stats.append({"host": "", "port": 0, "payload_up": 0, "payload_down": 0,
                                     "air_up": 0, "air_down": 0})
        self.spare_rx = []
        self.spare_up = []
        for _ in range(_LINK_BUFFERS):
            self.spare_rx.append(memoryview(bytearray(self.RX_BUFFER)))
            self.spare_up.append(memoryview(bytearray(_UP_BUFFER)))
        self.links = {}
        self.by_fd = {}
        self.poller = _bselect.poll()
        self.nreal = 0
        self.contexts = {1: sc.get("stale_context") or ""}
        self.nv = {}  # family NV settings (CNCFG APNs)
        self.figures = {
            "family": self.FAMILY, "air_up": 0, "air_down": 0, "payload_up": 0,
            "payload_down": 0, "sockets": [], "uart_rx": 0, "uart_tx": 0, "power_cycles": 0,
            "reboots": 0,
        }
        self._volatile_reset()
        self.iccid = self.slot_iccid
        self.imsi = self._imsi_for(self.iccid)

    # -- identities ------------------------------------------------------------------------

    def _imsi_for(self, iccid):
        if self.scenario_imsi and iccid == self.slot_iccid_first:
            return self.scenario_imsi
        r = Rng(int(iccid.rstrip("F")[-12:-1], 16) + 77)  # hex digits too
        return (self.plmn + _digits(r, 10))[:15]

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
        w.watch_pin(self.pwrkey["pin"], self._on_pwrkey)
        if self.reset_pin:
            w.watch_pin(self.reset_pin["pin"], self._on_reset)
        if self.power_pin:
            w.watch_pin(self.power_pin["pin"], self._on_supply)
        # STATUS has its level before the firmware looks at it.
        self._drive_status(False)
        self._schedule_events()
        w.figures["modem"] = self.figures
        w.add_poller(self)
        w.boot_hooks.append(self._esp32_boots)
        w.close_hooks.append(self._drop_links)

    def _level(self, ctl, active):
        high = ctl["active"] == "high"
        return (1 if high else 0) if active else (0 if high else 1)

    def _drive_status(self, active):
        self.world.drive_pin(self.status["pin"], self._level(self.status, active))

    # -- the ESP32 resets, the modem stays -------------------------------------------------

    def _esp32_boots(self, reset_cause):
        # A reset, watchdog or deep sleep of the ESP32 does not touch the modem. A power-on
        # boot finds it off (the power was gone), and so does a board with a modem_power line,
        # whose enable falls while the ESP32 resets.
        if reset_cause == _PWRON_RESET or self.power_pin:
            if self.power_pin:
                self.supply = False
            if self.state != _OFF:
                self._dead()
            self.iccid = self.slot_iccid
            self.imsi = self._imsi_for(self.iccid)

    # -- scenario events -------------------------------------------------------------------

    def _schedule_events(self):
        events = self.events
        now = self.world.now_us
        for i in range(len(events)):
            ev = events[i]
            due = int(ev["at"] * _US_PER_S)
            if due <= now:
                # Before the models started: the world is as the event left it.
                self._world(ev, False)
            else:
                self.world.at(due, self._event_cb(i, ev))

    def _event_cb(self, i, ev):
        def fire():
            self._world(ev, True)
            self._modem_event(ev)
        return fire

    def _world(self, ev, live):
        if "coverage" in ev:
            self.w_coverage = bool(ev["coverage"])
        if "deny" in ev:
            self.w_deny = bool(ev["deny"])
        if "reject_cause" in ev:
            self.w_cause = ev["reject_cause"]
        if "sms_only" in ev:
            self.w_sms_only = bool(ev["sms_only"])
        if "slow_ms" in ev:
            self.slow_us = int(ev["slow_ms"] * _US_PER_MS)
        if "sim_swap" in ev:
            self.slot_iccid = ev["sim_swap"]
        if live and ("coverage" in ev or "deny" in ev or "sms_only" in ev):
            self._reg_update()

    def _modem_event(self, ev):
        if ev.get("hang") and self.state in (_BOOTING, _ON):
            self.hung = True
            self._new_life()
            self.data_need = 0
        if ev.get("drop_data") and self.state == _ON:
            self._lose_data()
        if ev.get("close_after_open"):
            self.w_close_next = True  # once: not again when a later boot replays the world
        if ev.get("drop_sockets") and self.state == _ON:
            self._drop_links()
        if ev.get("modem_reset") and self.state == _ON and not self.hung:
            self._reboot()
        text = ev.get("garbage")
        if text and self.state != _OFF:
            if text.startswith("hex:"):
                data = binascii.unhexlify(text[4:])
            else:
                data = text.encode()
            self._emit(data, 0, True)
        n = ev.get("garbage_bytes")
        if n and self.state != _OFF:
            self._emit(self.rng.bytes(n), 0, True)

    # -- power -----------------------------------------------------------------------------

    def _later(self, delay_us, fn):
        gen = self.gen

        def fire():
            if self.gen == gen:
                fn()
        self.world.at(self.world.now_us + int(delay_us), fire)

    def _on_pwrkey(self, level):
        pressed = level == self._level(self.pwrkey, True)
        if pressed:
            if self.press_us < 0:
                self.press_us = self.world.now_us
            return
        if self.press_us < 0:
            return
        held_ms = (self.world.now_us - self.press_us) // _US_PER_MS
        self.press_us = -1
        if not self.supply:
            return
        if self.state == _OFF and held_ms >= self.on_ms:
            self._power_on()
        elif self.state in (_BOOTING, _ON) and held_ms >= self.off_ms:
            self._power_down(True)

    def _on_reset(self, level):
        if level == self._level(self.reset_pin, True):
            if self.reset_us < 0:
                self.reset_us = self.world.now_us
            return
        if self.reset_us < 0:
            return
        held_ms = (self.world.now_us - self.reset_us) // _US_PER_MS
        self.reset_us = -1
        if held_ms >= _RESET_MIN_MS and self.state != _OFF:
            self._reboot()

    def _on_supply(self, level):
        supply = level == self._level(self.power_pin, True)
        if supply == self.supply:
            return
        self.supply = supply
        if not supply and self.state != _OFF:
            self._dead()

    def _power_on(self):
        self.figures["power_cycles"] += 1
        self.iccid = self.slot_iccid
        self.imsi = self._imsi_for(self.iccid)
        self._start_boot()

    def _start_boot(self):
        self._new_life()
        self.state = _BOOTING
        self.hung = False
        self._volatile_reset()
        self._later(self.boot_us, self._booted)

    def _booted(self):
        self.state = _ON
        self._drive_status(True)
        for ms, line in (self.BOOT_URCS if self.sim_present else self.NO_SIM_URCS):
            self._urc(line, ms * _US_PER_MS)
        self._reg_update()

    def _power_down(self, urc, delay_us=0):
        # The power-down procedure: the family's goodbye, then STATUS falls power_off_s later.
        if urc and self.POWER_DOWN_URC:
            self._urc(self.POWER_DOWN_URC, delay_us)
        self._drop_links()
        self.state = _STOPPING
        self.stat = 0
        self.pdp_ip = None
        self._later(self.power_off_us, self._dead)

    def _dead(self):
        # Power gone: STATUS falls, everything volatile is lost.
        self._new_life()
        self._drop_links()
        self.state = _OFF
        self.hung = False
        self.stat = 0
        self.pdp_ip = None
        self._drive_status(False)

    def _reboot(self):
        self.figures["reboots"] += 1
        self._drop_links()
        self._drive_status(False)
        self._start_boot()

    # -- UART ------------------------------------------------------------------------------

    def _garbled(self):
        baud = self.world.uart_baud(self.uart_id)
        return baud is not None and baud != self.baud

    def _new_life(self):
        # A power change or a hang: work scheduled in the old life is void, and what waits for
        # the wire is lost.
        self.gen += 1
        self._tx_purge()

    def _tx_purge(self):
        self.tx_len = 0
        self.seg_count = 0
        self.seg_sent = 0

    def _emit(self, data, delay_us=0, noise=False):
        self._send_out((data,), None, delay_us, noise)

    def _send_out(self, parts, final=None, delay_us=0, noise=False):
        # Queues one write to the firmware: parts (str: a line, framed "\r\n<line>\r\n";
        # bytes-like: raw), then the final result line if any; after delay_us, behind what is
        # already on the wire, at the wire speed. The bytes are copied into the transmit queue.
        if self.state == _OFF or (self.hung and not noise):
            return
        due = self.world.now_us + delay_us
        if due < self.tx_free:
            due = self.tx_free
        start = (self.tx_head + self.tx_len) % _UART_TX_BUFFER
        n = 0
        for p in parts:
            n = self._tx_put(start, n, p)
        if final:
            n = self._tx_put(start, n, final)
        self.tx_free = due + n * self.us_per_byte
        if not n:
            return
        if self.seg_count == _UART_TX_SEGMENTS:
            raise RuntimeError("modem model: UART transmit queue full (%d writes)"
                               % _UART_TX_SEGMENTS)
        i = (self.seg_first + self.seg_count) % _UART_TX_SEGMENTS
        self.seg_due[i] = due
        self.seg_len[i] = n
        self.seg_upb[i] = self.us_per_byte
        self.seg_count += 1
        self.tx_len += n
        self._pump_later(self._head_due())

    def _tx_put(self, start, n, part):
        # Puts one part of a write behind the n bytes already put from start on: -> new n.
        if isinstance(part, str):
            line = part.encode()
            n = self._tx_put(start, n, b"\r\n")
            n = self._tx_put(start, n, line)
            return self._tx_put(start, n, b"\r\n")
        k = len(part)
        if self.tx_len + n + k > _UART_TX_BUFFER:
            raise RuntimeError("modem model: UART transmit queue full (%d bytes)"
                               % _UART_TX_BUFFER)
        if k:
            _ring_put(self.tx_ring, (start + n) % _UART_TX_BUFFER, part, k)
        return n + k

    def _tx_free_bytes(self):
        return _UART_TX_BUFFER - self.tx_len

    def _head_due(self):
        # When the next chunk of the first write has left the wire.
        i = self.seg_first
        k = self.seg_len[i] - self.seg_sent
        if k > _UART_CHUNK:
            k = _UART_CHUNK
        return self.seg_due[i] + (self.seg_sent + k) * self.seg_upb[i]

    def _pump_later(self, due):
        if self.pump_at < 0 or due < self.pump_at:
            self.pump_at = due
            self.world.at(due, self.pump_cb)

    def _pump(self):
        # Delivers every chunk whose wire time is over, in chunks of _UART_CHUNK bytes.
        self.pump_at = -1
        while self.seg_count:
            due = self._head_due()
            if due > self.world.now_us:
                self._pump_later(due)
                return
            i = self.seg_first
            k = self.seg_len[i] - self.seg_sent
            if k > _UART_CHUNK:
                k = _UART_CHUNK
            _ring_get(self.tx_ring, self.tx_head, self.chunk, k)
            self.tx_head = (self.tx_head + k) % _UART_TX_BUFFER
            self.tx_len -= k
            self.seg_sent += k
            if self.seg_sent == self.seg_len[i]:
                self.seg_first = (i + 1) % _UART_TX_SEGMENTS
                self.seg_count -= 1
                self.seg_sent = 0
            data = self.chunk_views[k]
            if self._garbled():
                data = self.rng.bytes(k)
            self.figures["uart_tx"] += k
            self.world.uart_feed(self.uart_id, data)

    def _urc(self, line, delay_us=0):
        self._send_out((line,), None, delay_us)

    def _delay(self):
        return self.reply_us + self.slow_us

    def _reply(self, parts, final, extra_us=0):
        self._send_out(parts, final, self._delay() + extra_us)

    def _error_text(self, code):
        if code is None or self.cmee == 0:
            return "ERROR"
        if self.cmee == 2 and code in _CME_TEXT:
            return "+CME ERROR: " + _CME_TEXT[code]
        return "+CME ERROR: %d" % code

    def receive(self, data):
        # Every firmware write on the modem UART.
        self.figures["uart_rx"] += len(data)
        if self.state != _ON or self.hung or self._garbled():
            return
        i = 0
        n = len(data)
        while i < n:
            if self.data_need:
                k = min(self.data_need, n - i)
                take = memoryview(data)[i:i + k]
                i += k
                got = self.data_got
                self.data_buf[got:got + k] = take
                self.data_got = got + k
                self.data_need -= k
                if self.echo:
                    self._emit(take)
                if not self.data_need:
                    done = self.data_done
                    self.data_done = None
                    done(self.data_buf[:self.data_got])
                continue
            b = data[i]
            i += 1
            if b == 13:
                line = bytes(self.line)
                self.line = bytearray()
                self._command_line(line)
                if self.state != _ON or self.hung:
                    return
            elif b == 10:
                continue
            elif b == 8:
                self.line = self.line[:-1]
            elif len(self.line) < _LINE_MAX:
                self.line.append(b)

    def _command_line(self, line):
        k = -1
        for j in range(len(line) - 1):
            if line[j] in (65, 97) and line[j + 1] in (84, 116):  # "AT", any case
                k = j
                break
        if k < 0:
            return  # no AT: not a command, ignored as the modem does
        self.read_used = 0
        if self.echo:
            self._emit(line + b"\r")
        try:
            text = line[k + 2:].decode().strip()
        except UnicodeError:
            self._reply((), "ERROR")
            return
        parts = []
        try:
            for cmd in _split_commands(text) or [""]:
                r = self._execute(cmd)
                if r is _DEFER:
                    return
                parts.extend(r)
        except _CmdError as e:
            self._reply(parts, self._error_text(e.args[0] if e.args else None))
            return
        self._reply(parts, "OK")

    def _execute(self, cmd):
        if not cmd:
            return []
        if cmd[0] != "+":
            return self._basic(cmd)
        j = 1
        while j < len(cmd) and cmd[j] not in "=?":
            j += 1
        name = cmd[1:j].lower()
        rest = cmd[j:]
        args = ()
        if rest == "":
            kind = ""
        elif rest == "?":
            kind = "?"
        elif rest == "=?":
            kind = "=?"
        elif rest[0] == "=":
            kind = "="
            args = _split_args(rest[1:])
        else:
            raise _CmdError(None)
        handler = getattr(self, "_at_" + name, None) if name.isalpha() else None
        if handler is None:
            raise _CmdError(None)
        if kind == "=?":
            return []  # test commands: accepted, ranges not modelled
        return handler(kind, args)

    def _basic(self, cmd):
        # V.250 basic commands: E, V, Q, Z, I, &F, &W, &D, &C, chained ("E0V1").
        i = 0
        out = []
        while i < len(cmd):
            c = cmd[i].upper()
            i += 1
            if c == "&" and i < len(cmd):
                c = "&" + cmd[i].upper()
                i += 1
            j = i
            while j < len(cmd) and cmd[j].isdigit():
                j += 1
            v = int(cmd[i:j]) if j > i else 0
            i = j
            if c == "E" and v in (0, 1):
                self.echo = v == 1
            elif c == "Z" or c == "&F":
                self.echo = True
                self.cmee = self.CMEE_DEFAULT
            elif c == "I":
                out.extend(self._ati())
            elif c in ("&W", "&D", "&C") or (c == "V" and v == 1) or (c == "Q" and v == 0):
                pass
            else:
                raise _CmdError(None)
        return out

    def _ati(self):
        return [self.MANUFACTURER, self.MODEL, "Revision: " + self.REVISION.split(":")[-1]
                .strip()]

    def _expect_data(self, n, done, prompt=b"\r\n> "):
        # The ">" prompt, then exactly n raw bytes for `done(payload)`. The modem takes data
        # from the moment the prompt is out, not before.
        gen = self.gen

        def ready():
            if self.gen == gen:
                self.data_need = n
                self.data_got = 0
                self.data_done = done
        self._emit(prompt, self._delay())
        self.world.at(self.tx_free, ready)

    # -- 27.007 commands -------------------------------------------------------------------

    def _at_cmee(self, kind, a):
        if kind == "?":
            return ["+CMEE: %d" % self.cmee]
        if kind != "=":
            raise _CmdError(None)
        self.cmee = _arg_int(a, 0, 0, 0, 2)
        return []

    def _need_sim(self):
        if not self.sim_present:
            raise _CmdError(10)

    def _at_cpin(self, kind, a):
        self._need_sim()
        if kind == "?":
            return ["+CPIN: READY"]
        raise _CmdError(3)

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

    def _at_gmr(self, kind, a):
        return [self.REVISION]

    def _signal(self):
        return self.state == _ON and self.cfun == 1 and self.sim_present and self.w_coverage

    def _at_csq(self, kind, a):
        if self._signal():
            return ["+CSQ: %d,99" % self.rssi]
        return ["+CSQ: 99,99"]

    def _reg_line(self, name, urc):
        n = self.reg_n[name]
        s = name + ": "
        if not urc:
            s += "%d," % n
        s += "%d" % self.stat
        if n >= 2 and self.stat in (1, 5, 6, 7):
            s += ',"%s","%07X",%d' % (self.tac, self.cell, self.act)
        elif n >= 3 and self.stat == 3:  # 27.007: <cause_type> 0, an EMM <reject_cause>
            s += ',"%s","%07X",%d,0,%d' % (self.tac, self.cell, self.act, self.w_cause)
        return s

    def _reg_command(self, name, kind, a):
        if kind == "?":
            return [self._reg_line(name, False)]
        if kind != "=":
            raise _CmdError(None)
        self.reg_n[name] = _arg_int(a, 0, 0, 0, 5 if name == "+CEREG" else 2)
        return []

    def _at_creg(self, kind, a):
        return self._reg_command("+CREG", kind, a)

    def _at_cgreg(self, kind, a):
        return self._reg_command("+CGREG", kind, a)

    def _at_cereg(self, kind, a):
        return self._reg_command("+CEREG", kind, a)

    def _registered(self):
        return self.stat in (1, 5, 6, 7)

    def _at_cops(self, kind, a):
        if kind == "?":
            if self._registered():
                return ['+COPS: 0,0,"%s",%d' % (self.operator, self.act)]
            return ["+COPS: 0"]
        if kind == "=":
            return []
        raise _CmdError(None)

    def _at_ceer(self, kind, a):
        # The modem's report on the last failure, in words.
        if self.stat == 3:
            why = _EMM_CAUSES.get(self.w_cause, "EMM cause %d" % self.w_cause)
        elif self.stat in (6, 7):
            why = "EPS services not allowed"
        else:
            why = "No cause information available"
        return ["+CEER: " + why]

    def _at_cgatt(self, kind, a):
        if kind == "?":
            return ["+CGATT: %d" % (1 if self.stat in (1, 5) else 0)]
        raise _CmdError(3)

    def _at_cfun(self, kind, a):
        if kind == "?":
            return ["+CFUN: %d" % self.cfun]
        if kind != "=":
            raise _CmdError(None)
        fun = _arg_int(a, 0)
        if fun not in (0, 1, 4):
            raise _CmdError(50)
        if _arg_int(a, 1, 0, 0, 1) == 1:
            self._reply((), "OK")
            self._later(_REBOOT_MS * _US_PER_MS, self._reboot)
            return _DEFER
        self.cfun = fun
        self._reg_update()
        return []

    def _at_cgdcont(self, kind, a):
        if kind == "?":
            return ['+CGDCONT: %d,"IP","%s","0.0.0.0",0,0,0,0' % (cid, self.contexts[cid])
                    for cid in sorted(self.contexts)]
        if kind != "=":
            raise _CmdError(None)
        cid = _arg_int(a, 0, None, 1, 15)
        if len(a) == 1:
            self.contexts.pop(cid, None)
        else:
            if _arg(a, 1).upper() not in ("IP", "IPV6", "IPV4V6"):
                raise _CmdError(50)
            self.contexts[cid] = _arg(a, 2, "")
        return []

    def _at_cgact(self, kind, a):
        if kind == "?":
            return ["+CGACT: %d,%d" % (cid, 1 if self.pdp_ip and cid == self.pdp_cid else 0)
                    for cid in sorted(self.contexts)]
        if kind != "=":
            raise _CmdError(None)
        on = _arg_int(a, 0, None, 0, 1)
        cid = _arg_int(a, 1, 1, 1, 15)
        if not on:
            if self.pdp_ip:
                self._drop_links()
                self.pdp_ip = None
            return []
        if self.pdp_ip:
            return []
        if not self._pdp_allowed(self.contexts.get(cid, "")):
            raise _CmdError(100)
        self._pdp_up(cid)
        return []

    def _at_cgpaddr(self, kind, a):
        if self.pdp_ip:
            return ['+CGPADDR: %d,"%s"' % (self.pdp_cid, self.pdp_ip)]
        return []

    def _at_cclk(self, kind, a):
        if kind != "?":
            raise _CmdError(3)
        t = 0
        if self._registered():
            t = self.world.epoch_seconds()
        g = time
        tm = (g.gmtime if hasattr(g, "gmtime") else g.localtime)(t)
        return ['+CCLK: "%02d/%02d/%02d,%02d:%02d:%02d+00"' % (tm[0] % 100, tm[1], tm[2], tm[3],
                                                              tm[4], tm[5])]

    def _at_ipr(self, kind, a):
        if kind == "?":
            return ["+IPR: %d" % self.baud]
        if kind != "=":
            raise _CmdError(None)
        baud = _arg_int(a, 0, None, 0, 4000000)
        if baud:
            self._reply((), "OK")  # the OK still goes at the old rate
            self._later(self._delay() + 1, lambda: setattr(self, "baud", baud))
            return _DEFER
        return []

    # -- radio -----------------------------------------------------------------------------

    def _set_stat(self, stat):
        if stat == self.stat:
            return
        self.stat = stat
        for name in ("+CREG", "+CGREG", "+CEREG"):
            if self.reg_n[name]:
                self._urc(self._reg_line(name, True))

    def _reg_target(self):
        if self.w_deny:
            return 3
        if self.w_sms_only:
            return 7 if self.roaming else 6
        return 5 if self.roaming else 1

    def _reg_update(self):
        # Brings registration in line with the radio and the world; called on every change.
        if self.state != _ON or self.cfun != 1 or not self.sim_present:
            self.searching = False
            self.reg_gen += 1
            if self.state == _ON:
                self._lose_data()
                self._set_stat(0)
            return
        if not self.w_coverage:
            if self.stat != 2 or self.searching:
                self.searching = False
                self.reg_gen += 1
                self._set_stat(2)
                self.loss_gen += 1
                gen = self.loss_gen
                self._later(_DATA_LOSS_S * _US_PER_S, lambda: self._coverage_gone(gen))
            return
        if self._registered() or self.stat == 3:
            target = self._reg_target()
            if self.stat == 3 and target != 3:
                self._set_stat(2)
                self._search()
            elif target != self.stat:
                if target in (3, 6, 7):
                    self._lose_data()
                self._set_stat(target)
            return
        if not self.searching:
            self._set_stat(2)
            self._search()

    def _search(self):
        self.searching = True
        self.reg_gen += 1
        gen = self.reg_gen
        self._later(self.register_us, lambda: self._search_done(gen))

    def _search_done(self, gen):
        if gen != self.reg_gen or not self.searching:
            return
        self.searching = False
        if self.w_coverage:
            self._set_stat(self._reg_target())

    def _coverage_gone(self, gen):
        if gen == self.loss_gen and not self.w_coverage:
            self._lose_data()

    # -- PDP -------------------------------------------------------------------------------

    def _pdp_allowed(self, apn):
        if self.stat not in (1, 5):
            return False
        return not self.net_apn or apn == "" or apn.lower() == self.net_apn.lower()

    def _pdp_up(self, cid):
        r = self.rng
        self.pdp_ip = "10.%d.%d.%d" % (r.below(256), r.below(256), 1 + r.below(254))
        self.pdp_cid = cid

    def _lose_data(self):
        # The network ends the data session: the family says so, sockets and PDP are gone.
        if self.pdp_ip is None and not self.links:
            return
        self._urcs_data_lost()
        self._drop_links()
        self.pdp_ip = None

    def _urcs_data_lost(self):
        pass

    # -- sockets ---------------------------------------------------------------------------

    def _count(self, link, up=0, down=0, payload_up=0, payload_down=0):
        f = self.figures
        s = link.stats
        f["air_up"] += up
        f["air_down"] += down
        f["payload_up"] += payload_up
        f["payload_down"] += payload_down
        s["air_up"] += up
        s["air_down"] += down
        s["payload_up"] += payload_up
        s["payload_down"] += payload_down

    def _stats_entry(self, host, port):
        # A socket's figures in the report: the last _SOCKETS_KEPT are kept, in entries made at
        # model start and reused.
        sockets = self.figures["sockets"]
        if len(sockets) >= _SOCKETS_KEPT:
            entry = sockets.pop(0)
        else:
            entry = self.spare_stats.pop()
        entry["host"] = host
        entry["port"] = port
        for k in ("payload_up", "payload_down", "air_up", "air_down"):
            entry[k] = 0
        sockets.append(entry)
        return entry

    def _resolve(self, host, port):
        # -> (address, port, outcome): outcome None, "dns" or "policy".
        target = self.hosts.get(host, host)
        if ":" in target:
            target, p = target.rsplit(":", 1)
            port = int(p)
        if target == "localhost":
            target = "127.0.0.1"
        if not _is_ipv4(target):
            return None, port, "dns"
        if not target.startswith("127."):
            return None, port, "policy"
        return target, port, None

    def _open(self, lid, host, port):
        # Opens a socket; -> "ok", "dns", "policy" or "refused". The real connect is done
        # now; the family reports the outcome a round trip later.
        addr, port, outcome = self._resolve(host, port)
        if outcome:
            return outcome
        link = _Link(lid, host, port)
        link.stats = self._stats_entry(host, port)
        self._count(link, up=SYN_BYTES)
        s = socket.socket()
        s.setblocking(False)
        failed = False
        try:
            s.connect(socket.getaddrinfo(addr, port)[0][-1])
        except OSError as e:
            failed = e.args[0] not in (_EINPROGRESS, _EAGAIN)
        if not failed:
            p = _bselect.poll()
            p.register(s, _POLLOUT)
            ready = p.poll(_CONNECT_WAIT_MS)
            failed = not ready or bool(ready[0][1] & (_POLLERR | _POLLHUP))
            p.unregister(s)
        if failed:
            s.close()
            self._count(link, down=RST_BYTES)
            return "refused"
        self._count(link, up=SEGMENT_OVERHEAD, down=SYN_BYTES)
        if self.spare_rx:
            link.rx = self.spare_rx.pop()
            link.up = self.spare_up.pop()
        else:
            link.rx = memoryview(bytearray(self.RX_BUFFER))
            link.up = memoryview(bytearray(_UP_BUFFER))
        link.sock = s
        link.fd = s.fileno()
        self.poller.register(s, _POLLIN)
        self.by_fd[link.fd] = link
        self.nreal += 1
        self.links[lid] = link
        return "ok"

    def _rtt(self):
        return 2 * self.latency_us

    def _up_room(self, link, n):
        # The modem takes n more bytes to send on the link (its send buffer has room).
        return link.up is not None and link.up_len + n <= len(link.up)

    def _send(self, link, data):
        # The firmware's bytes go over the air to the peer.
        n = len(data)
        segments = (n + MSS - 1) // MSS
        self._count(link, up=n + SEGMENT_OVERHEAD * segments, down=SEGMENT_OVERHEAD * segments,
                    payload_up=n)
        link.sent += n
        _ring_put(link.up, (link.up_head + link.up_len) % len(link.up), data, n)
        link.up_len += n
        due = max(self.world.now_us + self.latency_us, link.up_due)
        link.up_due = due

        def arrive():
            if link.state == _L_OPEN and link.sock is not None:
                link.up_ready += n
                self._flush(link)
                link.expect = True
        self.world.at(due, arrive)

    def _flush(self, link):
        while link.up_ready and link.sock is not None:
            head = link.up_head
            k = min(link.up_ready, len(link.up) - head)
            try:
                sent = link.sock.send(link.up[head:head + k])
            except OSError as e:
                if e.args[0] == _EAGAIN:
                    return
                self._peer_closed(link)
                return
            link.up_head = (head + sent) % len(link.up)
            link.up_len -= sent
            link.up_ready -= sent
            if sent < k:
                return

    def _take(self, link, n):
        # Up to n buffered bytes for the firmware's read command (or a push), copied out of
        # the socket's buffer into the model's read buffer.
        k = min(n, link.rx_len)
        used = self.read_used
        if used + k <= len(self.read_buf):
            out = self.read_buf[used:used + k]
            self.read_used = used + k
        else:
            out = memoryview(bytearray(k))  # reads chained beyond the read buffer
        _ring_get(link.rx, link.rx_head, out, k)
        link.rx_head = (link.rx_head + k) % len(link.rx)
        link.rx_len -= k
        link.read += k
        if not link.rx_len:
            link.notified = False
        return out

    def _push_data(self, link, head, n):
        # Direct push mode: the family's header, then the n bytes that just arrived.
        self.read_used = 0
        self._send_out((head, self._take(link, n)))

    def _close(self, link):
        # The firmware closes a socket.
        if link.state == _L_OPEN:
            self._count(link, up=CLOSE_BYTES, down=CLOSE_BYTES)
        self._release(link)
        link.state = _L_LOST
        self.links.pop(link.id, None)
        self._spare(link)

    def _spare(self, link):
        # The link is gone: its buffers serve the next one.
        if link.rx is not None and len(self.spare_rx) < _LINK_BUFFERS:
            self.spare_rx.append(link.rx)
            self.spare_up.append(link.up)
        link.rx = None
        link.up = None

    def _release(self, link):
        if link.sock is not None:
            self.poller.unregister(link.sock)
            self.by_fd.pop(link.fd, None)
            self.nreal -= 1
            link.sock.close()
            link.sock = None

    def _drop_links(self):
        for link in list(self.links.values()):
            self._release(link)
            link.state = _L_LOST
            self._spare(link)
        self.links = {}

    def _peer_closed(self, link):
        # The host socket ended: after the data before it, the close reaches the modem.
        self._release(link)
        due = max(self.world.now_us + self.latency_us, link.down_due)

        def arrive():
            if link.state == _L_OPEN and self.links.get(link.id) is link:
                link.state = _L_CLOSED
                self._count(link, up=CLOSE_BYTES, down=CLOSE_BYTES)
                self._urc_closed(link)
        self.world.at(due, arrive)

    def _pull(self, link):
        room = self.RX_BUFFER - link.rx_len - link.inflight
        if link.push:
            # Pushed data goes straight to the UART queue, a header in front of each arrival.
            room = min(room, self._tx_free_bytes() - link.inflight
                       - _PUSH_HEAD * (link.heads + 1))
        if room <= 0:
            return
        size = len(link.rx)
        tail = (link.rx_head + link.rx_len + link.inflight) % size
        n = _recv_into(link.sock, link.rx[tail:tail + min(room, MSS, size - tail)])
        if n is None:
            return
        if not n:
            self._peer_closed(link)
            return
        link.inflight += n
        link.heads += 1
        due = max(self.world.now_us + self.latency_us, link.down_due)
        link.down_due = due

        def arrive():
            link.inflight -= n
            link.heads -= 1
            if link.state != _L_OPEN or self.links.get(link.id) is not link:
                return
            segments = (n + MSS - 1) // MSS
            self._count(link, up=SEGMENT_OVERHEAD * segments,
                        down=n + SEGMENT_OVERHEAD * segments, payload_down=n)
            link.received += n
            link.rx_len += n
            if link.push:
                self._push(link, n)
                return
            if not link.notified:
                link.notified = True
                self._urc_data(link)
        self.world.at(due, arrive)

    # The poller interface of the world (musket_sim.models.world).

    def live(self):
        # Real sockets are open: the device must ask at every step, something may arrive.
        return self.nreal > 0

    def poll(self):
        if not self.nreal or self.state != _ON or self.hung:
            return
        for link in list(self.links.values()):
            if link.up_ready and link.sock is not None:
                self._flush(link)
        for entry in self.poller.poll(0):
            key = entry[0]
            if not isinstance(key, int):
                key = key.fileno()
            link = self.by_fd.get(key)
            if link is not None and link.sock is not None:
                self._pull(link)

    def awaiting(self):
        # The firmware just sent on these sockets: the clock holds still, up to the core's
        # real-time limit, until the peer answers. The model waits itself rather than leave it
        # to the core, so that what the peer sends back to back with its answer (more
        # segments, its FIN) is taken in with it, as it would arrive over the air.
        if not self.nreal:
            return []
        socks = []
        for link in self.links.values():
            if link.expect and link.sock is not None:
                link.expect = False
                socks.append(link.sock)
        wait_ms = NET_WAIT_MS
        rounds = _GRACE_ROUNDS
        while socks and rounds:
            p = _bselect.poll()
            for sock in socks:
                p.register(sock, _POLLIN)
            ready = p.poll(wait_ms)
            for sock in socks:
                p.unregister(sock)
            if not ready:
                break
            self.poll()
            socks = [link.sock for link in self.links.values() if link.sock is not None and
                     (link.sock in socks)]
            wait_ms = _GRACE_MS
            rounds -= 1
        return []

    # -- family hooks ----------------------------------------------------------------------

    def _urc_data(self, link):
        pass

    def _urc_closed(self, link):
        pass

    def _push(self, link, n):
        pass

    def _link_arg(self, a, i=0):
        lid = _arg_int(a, i)
        if lid < 0 or lid >= self.LINK_COUNT:
            raise _CmdError(50)
        return lid

    def _open_later(self, lid, host, port, report):
        # Runs the open now and reports `report(outcome)` a round trip later.
        outcome = self._open(lid, host, port)
        gen = self.gen

        def done():
            if gen != self.gen:
                return
            report(outcome)
            link = self.links.get(lid)
            if outcome == "ok" and self.w_close_next and link is not None:
                # The network ends it at once: the close URC right behind the result.
                self.w_close_next = False
                self._release(link)
                link.state = _L_CLOSED
                self._count(link, up=CLOSE_BYTES, down=CLOSE_BYTES)
                self._urc_closed(link)
        self.world.at(self.world.now_us + self._rtt(), done)


class Sim7080(Modem):
    # SIMCom SIM7080G (LTE-M / NB-IoT), "SIM7080 Series AT Command Manual" and its TCP/IP
    # application note: CNCFG/CNACT for the data bearer, CA* commands for sockets.
    FAMILY = "sim7080"
    BOOT_S = 4.0
    POWER_OFF_S = 2.0
    CMEE_DEFAULT = 0
    BOOT_URCS = ((0, "RDY"), (150, "+CFUN: 1"), (300, "+CPIN: READY"), (1500, "SMS Ready"))
    NO_SIM_URCS = ((0, "RDY"), (150, "+CFUN: 1"), (300, "+CPIN: NOT INSERTED"))
    POWER_DOWN_URC = "NORMAL POWER DOWN"
    MANUFACTURER = "SIMCOM INCORPORATED"
    MODEL = "SIMCOM_SIM7080G"
    REVISION = "Revision:1951B16SIM7080"
    IMEI_TAC = "86971505"
    LINK_COUNT = 13
    MAX_SEND = 1460
    MAX_READ = 1460
    PDP_MS = 1000
    # CAOPEN <result>: 0 success, 20 can't resolve the host, 23 remote refuse, 27 connect
    # failed, 21 network not active, 7 not supported
    CODES = {"ok": 0, "dns": 20, "refused": 23, "policy": 27}

    def _at_ccid(self, kind, a):
        self._need_sim()
        return [self.iccid]

    def _at_cpsi(self, kind, a):
        if kind != "?":
            raise _CmdError(None)
        if not self._registered():
            return ["+CPSI: NO SERVICE,Online"]
        mode = "LTE NB-IOT" if self.rat == "nb-iot" else "LTE CAT-M1"
        return ["+CPSI: %s,Online,%s-%s,0x%s,%d,123,EUTRAN-BAND20,6300,5,5,%d,%d,%d,%d" % (
            mode, self.plmn[:3], self.plmn[3:], self.tac, self.cell, self.rsrq, self.rsrp,
            -113 + 2 * self.rssi, self.sinr)]

    def _apn(self):
        cfg = self.nv.get("cncfg0")
        return cfg if cfg is not None else self.contexts.get(1, "")

    def _at_cncfg(self, kind, a):
        if kind == "?":
            out = []
            for i in range(4):
                apn = self.nv.get("cncfg%d" % i) or ""
                out.append('+CNCFG: %d,1,"%s","","",0' % (i, apn))
            return out
        if kind != "=":
            raise _CmdError(None)
        idx = _arg_int(a, 0, None, 0, 3)
        _arg_int(a, 1, 1, 0, 2)
        self.nv["cncfg%d" % idx] = _arg(a, 2, "")
        return []

    def _at_cnact(self, kind, a):
        if kind == "?":
            out = []
            for i in range(4):
                up = self.pdp_ip is not None and i == 0
                out.append('+CNACT: %d,%d,"%s"' % (i, 1 if up else 0,
                                                   self.pdp_ip if up else "0.0.0.0"))
            return out
        if kind != "=":
            raise _CmdError(None)
        idx = _arg_int(a, 0, None, 0, 3)
        action = _arg_int(a, 1, None, 0, 2)
        if idx != 0:
            raise _CmdError(4)
        if action == 0:
            if self.pdp_ip is None:
                raise _CmdError(3)
            self._drop_links()
            self.pdp_ip = None
            self._reply((), "OK")
            self._urc("+APP PDP: 0,DEACTIVE", self._delay() + 200 * _US_PER_MS)
            return _DEFER
        if self.pdp_ip is not None:
            raise _CmdError(3)
        self._reply((), "OK")
        gen = self.gen

        def attach():
            if gen != self.gen:
                return
            if self._pdp_allowed(self._apn()) and self.pdp_ip is None:
                self._pdp_up(1)
                self._urc("+APP PDP: 0,ACTIVE")
            else:
                self._urc("+APP PDP: 0,DEACTIVE")
        self.world.at(self.world.now_us + self._delay() + self.PDP_MS * _US_PER_MS, attach)
        return _DEFER

    def _at_cacid(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        self._link_arg(a)
        return []

    def _at_caopen(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        cid = self._link_arg(a)
        _arg_int(a, 1, None, 0, 3)
        proto = _arg(a, 2).upper()
        host = _arg(a, 3)
        port = _arg_int(a, 4, None, 1, 65535)
        if cid in self.links:
            raise _CmdError(3)
        if _arg_int(a, 5, 0, 0, 1) != 0 or proto != "TCP":
            code = 7
        elif self.pdp_ip is None:
            code = 21
        else:
            code = None
        if code is not None:
            self._reply(["+CAOPEN: %d,%d" % (cid, code)], "OK")
            return _DEFER

        def report(outcome):
            self._reply(["+CAOPEN: %d,%d" % (cid, self.CODES[outcome])], "OK")
        self._open_later(cid, host, port, report)
        return _DEFER

    def _at_casend(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        cid = self._link_arg(a)
        n = _arg_int(a, 1, None, 1, self.MAX_SEND)
        link = self.links.get(cid)
        if link is None or link.state != _L_OPEN or not self._up_room(link, n):
            raise _CmdError(3)

        def done(data):
            if link.state == _L_OPEN:
                self._send(link, data)
                self._reply((), "OK")
            else:
                self._reply((), "ERROR")
        self._expect_data(n, done)
        return _DEFER

    def _at_carecv(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        cid = self._link_arg(a)
        n = _arg_int(a, 1, None, 1, self.MAX_READ)
        link = self.links.get(cid)
        if link is None:
            raise _CmdError(3)
        data = self._take(link, n)
        if not data:
            return ["+CARECV: 0"]
        return [b"\r\n+CARECV: %d," % len(data), data, b"\r\n"]

    def _at_caclose(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        link = self.links.get(self._link_arg(a))
        if link is None:
            raise _CmdError(3)
        self._close(link)
        return []

    def _at_castate(self, kind, a):
        if kind != "?":
            raise _CmdError(None)
        return ["+CASTATE: %d,%d" % (lid, 1 if self.links[lid].state == _L_OPEN else 0)
                for lid in sorted(self.links)]

    def _at_cpowd(self, kind, a):
        urgent = kind == "=" and _arg_int(a, 0, 1, 0, 1) == 0
        self._power_down(not urgent, self._delay())
        return _DEFER

    def _urc_data(self, link):
        self._urc("+CADATAIND: %d" % link.id)

    def _urc_closed(self, link):
        self._urc("+CASTATE: %d,0" % link.id)

    def _urcs_data_lost(self):
        for lid in sorted(self.links):
            if self.links[lid].state == _L_OPEN:
                self._urc("+CASTATE: %d,0" % lid)
        if self.pdp_ip is not None:
            self._urc("+APP PDP: 0,DEACTIVE")


class Sim7600(Modem):
    # SIMCom SIM7600 / A7670 (LTE Cat-1), "SIM7500_SIM7600 Series TCPIP AT Command Manual":
    # NETOPEN for the bearer, CIPOPEN/CIPSEND/CIPRXGET/CIPCLOSE for sockets.
    FAMILY = "sim7600"
    BOOT_S = 12.0
    POWER_OFF_S = 3.0
    DEFAULT_RAT = "lte"
    CMEE_DEFAULT = 0
    BOOT_URCS = ((0, "RDY"), (1000, "+CPIN: READY"), (3000, "SMS DONE"), (3500, "PB DONE"))
    NO_SIM_URCS = ((0, "RDY"), (1000, "+CPIN: SIM REMOVED"))
    POWER_DOWN_URC = None
    MANUFACTURER = "SIMCOM INCORPORATED"
    MODEL = "A7670E-LASE"
    REVISION = "+CGMR: A011B07A7670M7_F"
    IMEI_TAC = "86259005"
    LINK_COUNT = 10
    MAX_SEND = 1500
    MAX_READ = 1500
    PDP_MS = 1500
    # +CIPOPEN <err>: 0 ok, 1 network failure, 2 network not opened, 4 operation not
    # supported, 10 timeout, 11 DNS parse failed
    CODES = {"ok": 0, "dns": 11, "refused": 1, "policy": 10}

    def _family_reset(self):
        self.netopen = False
        self.rx_mode = 0
        self.socket_cid = 1

    def _family_state(self):
        return {"netopen": self.netopen, "rx_mode": self.rx_mode}

    def _family_restore(self, saved):
        self.netopen = saved.get("netopen", False) and self.pdp_ip is not None
        self.rx_mode = saved.get("rx_mode", 0)

    def _at_ciccid(self, kind, a):
        self._need_sim()
        return ["+ICCID: " + self.iccid]

    def _at_cpsi(self, kind, a):
        if kind != "?":
            raise _CmdError(None)
        if not self._registered():
            return ["+CPSI: NO SERVICE,Online"]
        # The SIM7600 series reports RSRQ, RSRP and RSSI in tenths of a dB, and RSSNR as
        # (SINR + 20) / 2.
        return ["+CPSI: LTE,Online,%s-%s,0x%s,%d,123,EUTRAN-BAND3,1300,5,5,%d,%d,%d,%d" % (
            self.plmn[:3], self.plmn[3:], self.tac, self.cell, self.rsrq * 10, self.rsrp * 10,
            (-113 + 2 * self.rssi) * 10, (self.sinr + 20) // 2)]

    def _at_csocksetpn(self, kind, a):
        # The PDP context sockets use (SIM7600 TCP/IP application note).
        if kind == "?":
            return ["+CSOCKSETPN: %d" % self.socket_cid]
        if kind == "=":
            self.socket_cid = _arg_int(a, 0, None, 1, 16)
        return []

    def _at_netopen(self, kind, a):
        if kind == "?":
            return ["+NETOPEN: %d" % (1 if self.netopen else 0)]
        if kind != "":
            raise _CmdError(None)
        if self.netopen:
            self._reply(["+IP ERROR: Network is already opened"], "ERROR")
            return _DEFER
        self._reply((), "OK")
        gen = self.gen

        def attach():
            if gen != self.gen:
                return
            if self._pdp_allowed(self.contexts.get(1, "")):
                self._pdp_up(1)
                self.netopen = True
                self._urc("+NETOPEN: 0")
            else:
                self._urc("+NETOPEN: 1")
        self.world.at(self.world.now_us + self._delay() + self.PDP_MS * _US_PER_MS, attach)
        return _DEFER

    def _at_netclose(self, kind, a):
        if not self.netopen:
            self._reply(["+IP ERROR: Network not opened"], "ERROR")
            return _DEFER
        self._drop_links()
        self.netopen = False
        self.pdp_ip = None
        self._reply((), "OK")
        self._urc("+NETCLOSE: 0", self._delay() + 300 * _US_PER_MS)
        return _DEFER

    def _at_ipaddr(self, kind, a):
        if not self.netopen:
            self._reply(["+IP ERROR: Network not opened"], "ERROR")
            return _DEFER
        return ["+IPADDR: " + self.pdp_ip]

    def _at_ciprxget(self, kind, a):
        if kind == "?":
            return ["+CIPRXGET: %d" % self.rx_mode]
        if kind != "=":
            raise _CmdError(None)
        mode = _arg_int(a, 0, None, 0, 4)
        if mode in (0, 1):
            self.rx_mode = mode
            return []
        if mode == 3:
            raise _CmdError(4)  # hex reads are not modelled
        link = self.links.get(self._link_arg(a, 1))
        if link is None:
            raise _CmdError(None)
        if mode == 4:
            return ["+CIPRXGET: 4,%d,%d" % (link.id, link.rx_len)]
        data = self._take(link, _arg_int(a, 2, self.MAX_READ, 1, self.MAX_READ))
        head = b"\r\n+CIPRXGET: 2,%d,%d,%d\r\n" % (link.id, len(data), link.rx_len)
        return [head, data, b"\r\n"] if data else [head]

    def _at_cipopen(self, kind, a):
        if kind == "?":
            out = []
            for lid in range(self.LINK_COUNT):
                link = self.links.get(lid)
                if link is None:
                    out.append("+CIPOPEN: %d" % lid)
                else:
                    out.append('+CIPOPEN: %d,"TCP","%s",%d,-1' % (lid, link.host, link.port))
            return out
        if kind != "=":
            raise _CmdError(None)
        lid = self._link_arg(a)
        proto = _arg(a, 1).upper()
        host = _arg(a, 2)
        port = _arg_int(a, 3, None, 1, 65535)
        if lid in self.links:
            raise _CmdError(None)
        self._reply((), "OK")
        code = 4 if proto != "TCP" else (2 if not self.netopen else None)
        if code is not None:
            self._urc("+CIPOPEN: %d,%d" % (lid, code), self._delay())
            return _DEFER

        def report(outcome):
            if outcome == "ok":
                self.links[lid].push = self.rx_mode == 0
            self._urc("+CIPOPEN: %d,%d" % (lid, self.CODES[outcome]))
        self._open_later(lid, host, port, report)
        return _DEFER

    def _at_cipsend(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        lid = self._link_arg(a)
        n = _arg_int(a, 1, None, 1, self.MAX_SEND)
        link = self.links.get(lid)
        if link is None or link.state != _L_OPEN or not self._up_room(link, n):
            self._reply((), "+CIPERROR: 4")  # in place of the ">" prompt
            return _DEFER

        def done(data):
            if link.state == _L_OPEN:
                self._send(link, data)
                self._reply((), "OK")
                self._urc("+CIPSEND: %d,%d,%d" % (lid, n, n), self._delay())
            else:
                self._reply((), "ERROR")
        self._expect_data(n, done)
        return _DEFER

    def _at_cipclose(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        link = self.links.get(self._link_arg(a))
        if link is None:
            raise _CmdError(None)
        self._close(link)
        self._reply((), "OK")
        self._urc("+CIPCLOSE: %d,0" % link.id, self._delay())
        return _DEFER

    def _at_creset(self, kind, a):
        self._reply((), "OK")
        self._later(_REBOOT_MS * _US_PER_MS, self._reboot)
        return _DEFER

    def _at_cpof(self, kind, a):
        self._reply((), "OK")
        self._power_down(False)
        return _DEFER

    def _urc_data(self, link):
        self._urc("+CIPRXGET: 1,%d" % link.id)

    def _push(self, link, n):
        self._push_data(link, b"\r\n+RECEIVE,%d,%d\r\n" % (link.id, n), n)

    def _urc_closed(self, link):
        self._urc("+IPCLOSE: %d,1" % link.id)

    def _urcs_data_lost(self):
        if self.netopen:
            self._urc("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
        self.netopen = False


class Bg95(Modem):
    # Quectel BG95/BG96 (LTE-M / NB-IoT), "BG95&BG77 AT Commands Manual" and "TCP/IP
    # Application Note": QICSGP/QIACT for the bearer, QIOPEN/QISEND/QIRD/QICLOSE for sockets
    # in buffer access mode (access mode 1, direct push, too).
    FAMILY = "bg95"
    BOOT_S = 3.0
    POWER_OFF_S = 1.5
    CMEE_DEFAULT = 1
    BOOT_URCS = ((0, "RDY"), (200, "+CFUN: 1"), (300, "+CPIN: READY"), (400, "+QUSIM: 1"),
                 (600, "+QIND: SMS DONE"), (1000, "APP RDY"))
    NO_SIM_URCS = ((0, "RDY"), (200, "+CFUN: 1"), (300, "+CPIN: NOT INSERTED"),
                   (1000, "APP RDY"))
    POWER_DOWN_URC = "POWERED DOWN"
    MANUFACTURER = "Quectel"
    MODEL = "BG95-M3"
    REVISION = "BG95M3LAR02A03"
    IMEI_TAC = "86695004"
    LINK_COUNT = 12
    MAX_SEND = 1460
    MAX_READ = 1500
    PDP_MS = 1500
    # +QIOPEN <err>: 0 ok, 561 open PDP context failed, 563 socket identity has been used,
    # 565 DNS parse failed, 566 socket connect failed
    CODES = {"ok": 0, "dns": 565, "refused": 566, "policy": 566}

    def _ati(self):
        return [self.MANUFACTURER, self.MODEL, "Revision: " + self.REVISION]

    def _at_qccid(self, kind, a):
        self._need_sim()
        iccid = self.iccid + ("F" if len(self.iccid) == 19 else "")
        return ["+QCCID: " + iccid]

    def _sysmode(self):
        return "NBIoT" if self.rat == "nb-iot" else "eMTC"

    def _at_qcsq(self, kind, a):
        if not self._registered():
            return ['+QCSQ: "NOSERVICE"']
        return ['+QCSQ: "%s",%d,%d,%d,%d' % (self._sysmode(), -113 + 2 * self.rssi, self.rsrp,
                                              (self.sinr + 20) * 5, self.rsrq)]

    def _at_qnwinfo(self, kind, a):
        if not self._registered():
            return ["+QNWINFO: No Service"]
        return ['+QNWINFO: "%s","%s","LTE BAND 20",6300' % (self._sysmode(), self.plmn)]

    def _at_qicsgp(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        ctx = _arg_int(a, 0, None, 1, 15)
        if len(a) == 1:
            return ['+QICSGP: 1,"%s","","",0' % self.contexts.get(ctx, "")]
        _arg_int(a, 1, 1, 1, 3)
        self.contexts[ctx] = _arg(a, 2, "")
        return []

    def _at_qiact(self, kind, a):
        if kind == "?":
            if self.pdp_ip is None:
                return []
            return ['+QIACT: %d,1,1,"%s"' % (self.pdp_cid, self.pdp_ip)]
        if kind != "=":
            raise _CmdError(None)
        ctx = _arg_int(a, 0, None, 1, 15)
        if self.pdp_ip is not None:
            raise _CmdError(None)
        gen = self.gen

        def attach():
            if gen != self.gen:
                return
            if self.pdp_ip is None and self._pdp_allowed(self.contexts.get(ctx, "")):
                self._pdp_up(ctx)
                self._reply((), "OK", 0)
            else:
                self._reply((), "ERROR", 0)
        self.world.at(self.world.now_us + self._delay() + self.PDP_MS * _US_PER_MS, attach)
        return _DEFER

    def _at_qideact(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        _arg_int(a, 0, None, 1, 15)
        self._drop_links()
        self.pdp_ip = None
        return []

    def _at_qiopen(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        _arg_int(a, 0, None, 1, 15)
        lid = self._link_arg(a, 1)
        proto = _arg(a, 2).upper()
        host = _arg(a, 3)
        port = _arg_int(a, 4, None, 0, 65535)
        _arg_int(a, 5, 0, 0, 65535)
        mode = _arg_int(a, 6, 0, 0, 2)
        if mode == 2 or proto != "TCP":
            raise _CmdError(None)  # transparent mode and UDP are not modelled
        self._reply((), "OK")
        code = 563 if lid in self.links else (561 if self.pdp_ip is None else None)
        if code is not None:
            self._urc("+QIOPEN: %d,%d" % (lid, code), self._delay())
            return _DEFER

        def report(outcome):
            if outcome == "ok":
                self.links[lid].push = mode == 1 or self.push_all
            self._urc("+QIOPEN: %d,%d" % (lid, self.CODES[outcome]))
        self._open_later(lid, host, port, report)
        return _DEFER

    def _at_qisend(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        lid = self._link_arg(a)
        link = self.links.get(lid)
        n = _arg_int(a, 1, None, 0, self.MAX_SEND)
        if n == 0:
            if link is None:
                raise _CmdError(None)
            return ["+QISEND: %d,%d,0" % (link.sent, link.sent)]
        if link is None or link.state != _L_OPEN or not self._up_room(link, n):
            raise _CmdError(None)

        def done(data):
            if link.state == _L_OPEN:
                self._send(link, data)
                self._reply((), "SEND OK")
            else:
                self._reply((), "SEND FAIL")
        self._expect_data(n, done)
        return _DEFER

    def _at_qird(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        link = self.links.get(self._link_arg(a))
        if link is None:
            raise _CmdError(None)
        n = _arg_int(a, 1, self.MAX_READ, 0, self.MAX_READ)
        if n == 0:
            return ["+QIRD: %d,%d,%d" % (link.received, link.read, link.rx_len)]
        data = self._take(link, n)
        if not data:
            return ["+QIRD: 0"]
        return [b"\r\n+QIRD: %d\r\n" % len(data), data, b"\r\n"]

    def _at_qiclose(self, kind, a):
        if kind != "=":
            raise _CmdError(None)
        link = self.links.get(self._link_arg(a))
        if link is not None:
            self._close(link)
        return []

    def _at_qistate(self, kind, a):
        lids = sorted(self.links)
        if kind == "=":
            lids = [i for i in lids if i == _arg_int(a, 1)]
        out = []
        for lid in lids:
            link = self.links[lid]
            out.append('+QISTATE: %d,"TCP","%s",%d,0,%d,%d,0,%d,"uart1"' % (
                lid, link.host, link.port, 2 if link.state == _L_OPEN else 4, self.pdp_cid,
                1 if link.push else 0))
        return out

    def _at_qpowd(self, kind, a):
        normal = not (kind == "=" and _arg_int(a, 0, 1, 0, 1) == 0)
        if normal:
            self._reply((), "OK")
        self._power_down(True, self._delay())
        return _DEFER

    def _urc_data(self, link):
        self._urc('+QIURC: "recv",%d' % link.id)

    def _push(self, link, n):
        self._push_data(link, b'\r\n+QIURC: "recv",%d,%d\r\n' % (link.id, n), n)

    def _urc_closed(self, link):
        self._urc('+QIURC: "closed",%d' % link.id)

    def _urcs_data_lost(self):
        if self.pdp_ip is not None:
            self._urc('+QIURC: "pdpdeact",%d' % self.pdp_cid)


FAMILIES = {"sim7080": Sim7080, "sim7600": Sim7600, "bg95": Bg95}


def install(world, settings):
    # The modem on the board, attached to its world before the device's first boot.
    scenario = settings.get("modem") or {}
    board = settings["board_device"]
    family = scenario.get("family") or board["modem"]["family"]
    if family == "sim7000":  # an older SIMCom module, modelled apart
        from musket_sim.models.modem_sim7000 import Sim7000
        FAMILIES[family] = Sim7000
    modem = FAMILIES[family](world, scenario, board, settings)
    modem.start(settings)
    return modem
