# Data used on the link: the bytes this device sent and received over the air since its first
# boot, as a carrier bills them (IP packets: payload and headers), kept on flash. Its section
# of the status, {"tx": n, "rx": n}, is what the status message reports; the fleet service
# turns successive totals into data per SIM per day.
#
# None of the families' modems counts for us in a way every family shares (Quectel's
# AT+QGDCNT does, SIMCom's do not), so the socket layer (app/modem/tcp.py) tells this part of
# every open, send, receive and close, and the bytes are estimated from them with the TCP/IP
# figures below. TLS is above the socket: its records, handshakes and alerts are payload here,
# counted as they are. What is not counted: DNS, PDP signalling, TCP keep-alives and
# retransmissions (a lossy cell costs more than this says).
#
# The carrier's data stop: a bearer refused with ESM cause 33 puts "dp": 1 in the section (the
# status message's data-paused flag) until a bearer comes up again. A device whose data is
# stopped cannot say so upstream, so "ds" counts the stops since the first boot (kept on
# flash with the totals): the first status after the data returns tells the fleet service
# that a stop happened, and the fleet keeps how many.
#
# Power cuts: the totals are written (an atomic record, app/store.py) at most every
# save_every_s, on the first traffic after it passed, and by save() when the uplink publishes
# its status. A cut loses at most what was used since the last save: an under-count, never
# a count twice.
import time

from app import store
from micropython import const

PATH = "/datause.json"
_SEGMENT_HEADERS = const(52)  # IPv4 20 + TCP 20 + timestamps option 12, per segment
_MSS = const(1380)  # LTE's MTU 1500 less headers and the operator's tunnel slack
_OPEN_UP = const(112)  # SYN (60: MSS, SACK, timestamps, window scale) + the last ACK (52)
_OPEN_DOWN = const(60)  # SYN-ACK
_CLOSE_BYTES = const(104)  # FIN + ACK, each way, whoever closes
_SAVE_EVERY_S = const(21600)  # a power cut loses at most 6 h of counts
# How a modem words ESM cause 33 in AT+CEER: the carrier refuses the data bearer because it
# stopped the SIM's data (a data-limit pause, a SIM paused by its owner).
_DATA_STOPPED = "service option not subscribed"


class DataUse:
    def __init__(self, log, save_every_s=None):
        self.log = log
        self.save_every_ms = (save_every_s or _SAVE_EVERY_S) * 1000
        self.section = {"tx": 0, "rx": 0}
        try:
            saved = store.read_json(PATH, None)
        except store.StoreError as e:
            log.error("data", "totals unreadable, counting from 0: %s" % e)
            saved = None
        if saved:
            self.section["tx"] = saved.get("tx", 0)
            self.section["rx"] = saved.get("rx", 0)
            if saved.get("ds"):
                self.section["ds"] = saved["ds"]
        self._saved = time.ticks_ms()
        self._dirty = False

    # -- what the modem and its sockets tell --------------------------------------------------

    def bearer_refused(self, why):
        # The network refused the data bearer; `why` is the modem's AT+CEER text, or None.
        if why and _DATA_STOPPED in why.lower():
            if "dp" not in self.section:
                self.log.warning("data", "the carrier stopped this SIM's data: " + why)
                self.section["ds"] = self.section.get("ds", 0) + 1
                self.section["dp"] = 1
                self._dirty = True
                self.save()  # no traffic will come to save it while the data is stopped
            self.section["dp"] = 1

    def bearer_up(self):
        if self.section.pop("dp", None):
            self.log.info("data", "the carrier's data flows again")

    def opened(self):
        self._add(_OPEN_UP, _OPEN_DOWN)

    def closed(self):
        self._add(_CLOSE_BYTES, _CLOSE_BYTES)

    def sent(self, n):
        # One send command of n bytes: its segments go up, the peer's ACKs come down.
        segments = (n + _MSS - 1) // _MSS
        self._add(n + segments * _SEGMENT_HEADERS, segments * _SEGMENT_HEADERS)

    def received(self, n):
        # n bytes taken from the modem at once: the segments that carried them, our ACKs.
        segments = (n + _MSS - 1) // _MSS
        self._add(segments * _SEGMENT_HEADERS, n + segments * _SEGMENT_HEADERS)

    def _add(self, up, down):
        s = self.section
        s["tx"] += up
        s["rx"] += down
        self._dirty = True
        if time.ticks_diff(time.ticks_ms(), self._saved) >= self.save_every_ms:
            self.save()

    # -- flash -------------------------------------------------------------------------------

    def save(self):
        # Writes the totals if they changed since the last write; a failed write is logged and
        # tried again with the next traffic (the totals stay in RAM meanwhile).
        self._saved = time.ticks_ms()
        if not self._dirty:
            return
        try:
            store.write_json(PATH, self.section)
            self._dirty = False
        except store.StoreError as e:
            self.log.error("data", str(e))
