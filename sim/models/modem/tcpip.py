"""The modem's TCP/IP path: its sockets carried to real non-blocking sockets on the host, the
world's poller interface, and the air-byte accounting.

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
  billed  the air bytes (up + down) per SIM (the ICCID in the slot) per UTC day of the virtual
    calendar, as a carrier bills them: musket_sim.carrier writes the carrier's usage file.
  uart_rx / uart_tx  bytes the modem received from / sent to the firmware (not air bytes).
  Also: family, sockets (one entry per connection attempt that reached a host socket, the
  last 50), power_cycles (power-ons this boot), reboots (RESET line, AT+CRESET, AT+CFUN=1,1).
"""
import errno
import select
import socket
import time
from dataclasses import dataclass

from musket_sim.models.modem.common import L_CLOSED, L_LOST, L_OPEN, ON, ring_get, ring_put
from musket_sim.models.world import NET_WAIT_MS

# The over-the-air byte model (see the module docstring).
SEGMENT_OVERHEAD = 52  # IPv4 20 + TCP 20 + timestamps 12
MSS = 1380
SYN_BYTES = 60
RST_BYTES = 40
CLOSE_BYTES = 104  # each way: FIN + ACK

_CONNECT_WAIT_MS = 500  # real wait for a loopback connect to complete or fail
_GRACE_MS = 10  # after a peer's answer, real wait for what it sends right behind it
_GRACE_ROUNDS = 4
_UP_BUFFER = 4096  # per socket: bytes sent by the firmware, still in the air
_LINK_BUFFERS = 2  # sockets whose buffers are made at model start; more get theirs at open
_PUSH_HEAD = 48  # room kept in the UART queue for the header of each pushed arrival
_SOCKETS_KEPT = 50  # per-socket figures kept in the report


def _is_ipv4(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def _recv_into(sock, view):
    # Reads from a non-blocking socket into view: -> bytes read, 0 at the end of the stream (or
    # an error), None when nothing is waiting.
    try:
        return sock.recv_into(view)
    except OSError as e:
        return None if e.errno == errno.EAGAIN else 0


@dataclass(eq=False)
class Link:
    # One socket of the modem, and the real TCP socket behind it.
    id: int
    host: str
    port: int
    sock: socket.socket | None = None
    fd: int = -1
    state: int = L_OPEN
    # Down: a ring of RX_BUFFER bytes; rx_len bytes from rx_head on are readable, the inflight
    # bytes behind them were read from the host socket and are still in the air.
    rx: memoryview | None = None
    rx_head: int = 0
    rx_len: int = 0
    inflight: int = 0
    # Up: a ring of _UP_BUFFER bytes; up_len bytes from up_head on were sent by the firmware,
    # the first up_ready of them have reached the peer's side (the host socket has not taken
    # them yet).
    up: memoryview | None = None
    up_head: int = 0
    up_len: int = 0
    up_ready: int = 0
    heads: int = 0  # arrivals in the air (each a header when pushed)
    up_due: int = 0
    down_due: int = 0
    notified: bool = False  # data URC sent, buffer not yet read empty
    expect: bool = False  # a reply is expected on the host socket
    push: bool = False  # data pushed to the UART instead of buffered
    sent: int = 0
    received: int = 0
    read: int = 0
    stats: dict | None = None  # the socket's entry in the report (TcpIp._stats_entry)


class TcpIp:
    # The modem's sockets, the host sockets behind them and the byte counts (a part of Modem).

    def _init_links(self):
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
        self.poller = select.poll()
        self.nreal = 0

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
        if up or down:
            self._carrier_check()
            billed = f["billed"].setdefault(self.iccid, {})
            day = time.strftime("%Y-%m-%d", time.gmtime(self.world.epoch_seconds()))
            billed[day] = billed.get(day, 0) + up + down
            if self.data_limit is not None and not self.w_data_stop and \
                    sum(billed.values()) >= self.data_limit:
                self._later(0, self._data_limit_reached)  # not in the middle of this send

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
        link = Link(lid, host, port)
        link.stats = self._stats_entry(host, port)
        self._count(link, up=SYN_BYTES)
        s = socket.socket()
        s.setblocking(False)
        failed = False
        try:
            s.connect(socket.getaddrinfo(addr, port)[0][-1])
        except OSError as e:
            failed = e.errno not in (errno.EINPROGRESS, errno.EAGAIN)
        if not failed:
            p = select.poll()
            p.register(s, select.POLLOUT)
            ready = p.poll(_CONNECT_WAIT_MS)
            failed = not ready or bool(ready[0][1] & (select.POLLERR | select.POLLHUP))
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
        self.poller.register(s, select.POLLIN)
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
        ring_put(link.up, (link.up_head + link.up_len) % len(link.up), data, n)
        link.up_len += n
        due = max(self.world.now_us + self.latency_us, link.up_due)
        link.up_due = due

        def arrive():
            if link.state == L_OPEN and link.sock is not None:
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
                if e.errno == errno.EAGAIN:
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
        ring_get(link.rx, link.rx_head, out, k)
        link.rx_head = (link.rx_head + k) % len(link.rx)
        link.rx_len -= k
        link.read += k
        if not link.rx_len:
            link.notified = False
        return out

    def _close(self, link):
        # The firmware closes a socket.
        if link.state == L_OPEN:
            self._count(link, up=CLOSE_BYTES, down=CLOSE_BYTES)
        self._release(link)
        link.state = L_LOST
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
            link.state = L_LOST
            self._spare(link)
        self.links = {}

    def _peer_closed(self, link):
        # The host socket ended: after the data before it, the close reaches the modem.
        self._release(link)
        due = max(self.world.now_us + self.latency_us, link.down_due)

        def arrive():
            if link.state == L_OPEN and self.links.get(link.id) is link:
                link.state = L_CLOSED
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
            if link.state != L_OPEN or self.links.get(link.id) is not link:
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
        if not self.nreal or self.state != ON or self.hung:
            return
        for link in list(self.links.values()):
            if link.up_ready and link.sock is not None:
                self._flush(link)
        for fd, _ in self.poller.poll(0):
            link = self.by_fd.get(fd)
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
            p = select.poll()
            for sock in socks:
                p.register(sock, select.POLLIN)
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
