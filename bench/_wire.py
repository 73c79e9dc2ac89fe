"""Where an uplink's bytes go: a recording TCP relay between the modem model and the broker,
and parsers that split what crossed it into TLS and MQTT parts (bench/uplink.py).

What crossed the device's socket is recorded by `Relay` (the device connects to the relay, the
relay to Mosquitto; each accepted connection is one session). The modem model's air count less
the bytes that crossed the socket is the TCP/IP overhead; the socket's bytes are split here:

  tls_handshake  whole TLS records that are not application data: ClientHello, ServerHello,
                 change_cipher_spec, the encrypted handshake (EncryptedExtensions, Certificate,
                 CertificateVerify, Finished), the post-handshake NewSessionTickets, alerts
  tls_records    per application-data record: the 5-byte header, the AEAD tag, the inner
                 content type (and any padding)
  mqtt_framing   every MQTT byte that is neither a ping nor a PUBLISH payload: fixed and
                 variable headers, topics, packet ids, CONNECT/CONNACK, SUBSCRIBE/SUBACK,
                 PUBACK, DISCONNECT
  keepalive      PINGREQ and PINGRESP
  payload        PUBLISH payloads, both directions

TLS 1.3 hides which encrypted records are handshake (the server's flight, both Finished
messages and the session tickets all travel as application-data records), and MQTT inside.
So the records are decrypted: the device's TLS context writes the NSS key log (what
SSLKEYLOGFILE gives; `keylog_prelude`, CPython only, changes nothing on the wire) and each
record's inner content type says what it is. The MQTT split of a TLS run is then measured in
that run, not borrowed from a plain one."""

from __future__ import annotations

import errno
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

PARTS = ("tcpip", "tls_handshake", "tls_records", "mqtt_framing", "keepalive", "payload")
UP, DOWN = "up", "down"

# -- the relay ------------------------------------------------------------------------------

_ACCEPT_POLL_S = 0.2  # how often the accepting thread looks whether the relay was closed
_CONNECT_TIMEOUT_S = 5  # the broker is on loopback: a connect that takes this long failed
_RECV = 65536
_DRAIN_S = 10  # after the run, how long the relay waits for both ends of every session


@dataclass
class Session:
    """One TCP connection through the relay: the bytes each way, in order."""

    up: bytearray = field(default_factory=bytearray)  # device -> broker
    down: bytearray = field(default_factory=bytearray)  # broker -> device


class Relay:
    """Listens on a loopback port; each connection to it is forwarded to `target_port` and
    recorded as a Session. One thread per direction, so a side that stops reading (the modem
    model's window closes) holds up only its own direction."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.sessions: list[Session] = []
        self._pumps: list[threading.Thread] = []
        self._stop = threading.Event()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(_ACCEPT_POLL_S)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                device, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection((self.host, self.target_port),
                                                  _CONNECT_TIMEOUT_S)
            except OSError:
                device.close()  # the device sees its connection end, as with no broker
                continue
            broker.settimeout(None)
            for s in (device, broker):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = Session()
            self.sessions.append(session)
            ends = [2]
            lock = threading.Lock()
            for src, dst, record in ((device, broker, session.up), (broker, device, session.down)):
                t = threading.Thread(target=self._pump,
                                     args=(src, dst, record, (device, broker), ends, lock),
                                     daemon=True)
                t.start()
                self._pumps.append(t)

    @staticmethod
    def _pump(src, dst, record: bytearray, pair, ends: list, lock: threading.Lock) -> None:
        while True:
            try:
                data = src.recv(_RECV)
            except ConnectionResetError:  # the same as its end, for the recording
                data = b""
            if not data:
                break
            record += data
            try:
                dst.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break  # the other end has gone (the recording is cut to the model's: trim)
        try:
            dst.shutdown(socket.SHUT_WR)  # pass the end on, as a FIN
        except OSError as e:
            if e.errno != errno.ENOTCONN:  # ENOTCONN: the other end has gone already
                raise
        with lock:
            ends[0] -= 1
            if ends[0] == 0:
                for s in pair:
                    s.close()

    def close(self) -> None:
        """Stops accepting and waits for the sessions' ends (the device's process has ended)."""
        self._stop.set()
        self._acceptor.join()
        self._listener.close()
        for t in self._pumps:
            t.join(_DRAIN_S)
            if t.is_alive():
                raise RuntimeError("relay: a session did not end after the run")

    def trim(self, counted: list[dict]) -> bool:
        """Cuts each session's recording to what the modem model counted on that socket
        (`counted`: the model's socket entries, in order, with payload_up and payload_down),
        so bytes the relay passed on after the device's day ended (a broker's close_notify
        to a device already gone) are not split. False, and nothing cut, when the model's
        sockets do not pair off with the sessions."""
        if len(counted) != len(self.sessions) or any(
                c["payload_up"] > len(s.up) or c["payload_down"] > len(s.down)
                for c, s in zip(counted, self.sessions, strict=True)):
            return False
        for c, s in zip(counted, self.sessions, strict=True):
            del s.up[c["payload_up"]:]
            del s.down[c["payload_down"]:]
        return True

    def crossed(self) -> tuple[int, int]:
        """Bytes up and down over all sessions."""
        return (sum(len(s.up) for s in self.sessions), sum(len(s.down) for s in self.sessions))


# -- MQTT ----------------------------------------------------------------------------------

MQTT_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
              7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
              12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}
_PUBLISH, _PINGREQ, _PINGRESP = 3, 12, 13


@dataclass
class Tally:
    """Bytes per part, and how many of each thing, over one device-day."""

    parts: Counter = field(default_factory=Counter)
    packets: Counter = field(default_factory=Counter)  # (direction, MQTT packet name)
    handshake: Counter = field(default_factory=Counter)  # what tls_handshake is made of
    publishes: Counter = field(default_factory=Counter)  # (direction, topic): messages
    publish_bytes: Counter = field(default_factory=Counter)  # (direction, topic): payload
    sessions: int = 0
    truncated: int = 0  # bytes of a packet or record the run's end cut off (in mqtt_framing)


class MqttSplitter:
    """Splits one direction's MQTT byte stream into framing, keepalive and payload; bytes may
    come in any pieces (one TLS record's content at a time)."""

    def __init__(self, tally: Tally, direction: str) -> None:
        self.tally = tally
        self.direction = direction
        self.buf = bytearray()

    def feed(self, data) -> None:
        self.buf += data
        pos = 0
        while True:
            size = _mqtt_packet(self.buf, pos)
            if size is None:
                break
            self._count(bytes(self.buf[pos:pos + size]))
            pos += size
        del self.buf[:pos]

    def finish(self) -> None:
        if self.buf:  # the run ended inside a packet
            self.tally.parts["mqtt_framing"] += len(self.buf)
            self.tally.truncated += len(self.buf)
            self.buf.clear()

    def _count(self, packet: bytes) -> None:
        kind = packet[0] >> 4
        self.tally.packets[(self.direction, MQTT_NAMES.get(kind, f"type{kind}"))] += 1
        if kind in (_PINGREQ, _PINGRESP):
            self.tally.parts["keepalive"] += len(packet)
            return
        if kind != _PUBLISH:
            self.tally.parts["mqtt_framing"] += len(packet)
            return
        head = 1
        while packet[head] & 0x80:
            head += 1
        head += 1  # fixed header: type and flags, remaining length
        topic_len = struct.unpack_from(">H", packet, head)[0]
        qos = (packet[0] >> 1) & 3
        framing = head + 2 + topic_len + (2 if qos else 0)
        topic = (self.direction, packet[head + 2:head + 2 + topic_len].decode())
        self.tally.parts["mqtt_framing"] += framing
        self.tally.parts["payload"] += len(packet) - framing
        self.tally.publishes[topic] += 1
        self.tally.publish_bytes[topic] += len(packet) - framing


def _mqtt_packet(buf: bytearray, pos: int) -> int | None:
    # The size of the whole packet at pos, or None when buf does not hold all of it yet.
    n = len(buf)
    length = 0
    shift = 0
    i = pos + 1
    while True:
        if i >= n:
            return None
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ValueError(f"MQTT: bad remaining length at byte {pos}")
    end = i + length
    return end - pos if end <= n else None


def split_plain(sessions: list[Session], tally: Tally) -> None:
    """Plain MQTT: every byte of every session into framing, keepalive or payload."""
    for s in sessions:
        tally.sessions += 1
        for direction, data in ((UP, s.up), (DOWN, s.down)):
            splitter = MqttSplitter(tally, direction)
            splitter.feed(data)
            splitter.finish()


# -- TLS 1.3 --------------------------------------------------------------------------------

_CCS, _ALERT, _HANDSHAKE, _APPDATA = 20, 21, 22, 23
_RECORD_HEADER = 5
_TAG = 16  # the AEAD tag of every TLS 1.3 suite below
_TLS13 = 0x0304
# ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3).
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
# Cipher suite -> (AEAD, key length, hash): the suites TLS 1.3 defines with a 16-byte tag.
_SUITES: dict[int, tuple[type[AESGCM] | type[ChaCha20Poly1305], int,
                         type[hashes.HashAlgorithm]]] = {
    0x1301: (AESGCM, 16, hashes.SHA256),  # TLS_AES_128_GCM_SHA256
    0x1302: (AESGCM, 32, hashes.SHA384),  # TLS_AES_256_GCM_SHA384
    0x1303: (ChaCha20Poly1305, 32, hashes.SHA256),  # TLS_CHACHA20_POLY1305_SHA256
}
HANDSHAKE_NAMES = {1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket",
                   8: "EncryptedExtensions", 11: "Certificate", 13: "CertificateRequest",
                   15: "CertificateVerify", 20: "Finished", 24: "KeyUpdate"}
_FINISHED = 20
# Key log labels: (direction, before/after that side's Finished).
_SECRETS = {UP: ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"),
            DOWN: ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0")}

KEYLOG_PRELUDE = """
import ssl as _ssl
_wrap_bio = _ssl.SSLContext.wrap_bio


def _wrap_bio_keylog(self, *args, **kwargs):
    # bench: the session keys to {path!r} (NSS key log), for bench/_wire.py to read records
    self.keylog_filename = {path!r}
    return _wrap_bio(self, *args, **kwargs)


_ssl.SSLContext.wrap_bio = _wrap_bio_keylog
"""


def keylog_prelude(path: Path) -> str:
    """Device-script lines that make the firmware's TLS context (CPython's ssl, as
    app.uplink.tlsstream uses it in the sim) log its session secrets to `path`."""
    return KEYLOG_PRELUDE.format(path=str(path))


def read_keylog(path: Path) -> dict[tuple[str, bytes], bytes]:
    """(label, client random) -> secret, from an NSS key log file."""
    secrets = {}
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) == 3 and not line.startswith("#"):
            secrets[(words[0], bytes.fromhex(words[1]))] = bytes.fromhex(words[2])
    return secrets


def _expand_label(hash_cls, secret: bytes, label: bytes, length: int) -> bytes:
    # HKDF-Expand-Label(secret, label, "", length), RFC 8446 7.1.
    full = b"tls13 " + label
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hash_cls(), length, info).derive(secret)


class _Keys:
    """One direction's record protection: the AEAD, its IV and the record sequence number."""

    def __init__(self, suite: int, secret: bytes) -> None:
        aead, key_len, hash_cls = _SUITES[suite]
        self.aead = aead(_expand_label(hash_cls, secret, b"key", key_len))
        self.iv = int.from_bytes(_expand_label(hash_cls, secret, b"iv", 12), "big")
        self.seq = 0

    def decrypt(self, header: bytes, body: bytes) -> tuple[int, bytes, int]:
        """-> (inner content type, content, padding length)."""
        nonce = (self.iv ^ self.seq).to_bytes(12, "big")
        self.seq += 1
        inner = self.aead.decrypt(nonce, body, header)
        end = len(inner)
        while end and not inner[end - 1]:
            end -= 1
        if not end:
            raise ValueError("TLS: a record with no content type")
        return inner[end - 1], inner[:end - 1], len(inner) - end


class _Direction:
    """One direction of one TLS session: records in, parts and MQTT out."""

    def __init__(self, tally: Tally, direction: str, keys: list[_Keys]) -> None:
        self.tally = tally
        self.direction = direction
        self.mqtt = MqttSplitter(tally, direction)
        self.keys = keys  # handshake keys, then traffic keys once this side sent Finished
        self.hs = bytearray()  # handshake messages, possibly split over records

    def record(self, kind: int | None, header: bytes, body: bytes) -> None:
        if kind is None:  # the run ended inside a record
            self.tally.parts["mqtt_framing"] += len(header)
            self.tally.truncated += len(header)
        elif kind in (_CCS, _ALERT):
            self.other(kind, len(header) + len(body))
        elif kind == _HANDSHAKE:  # the hellos, in the clear
            self.handshake(body, _RECORD_HEADER)
        elif kind == _APPDATA:
            if not self.keys:
                raise ValueError(f"TLS: an encrypted record {self.direction} and no keys")
            inner, content, padding = self.keys[0].decrypt(header, body)
            overhead = _RECORD_HEADER + _TAG + 1 + padding
            if inner == _APPDATA:
                self.tally.parts["tls_records"] += overhead
                self.mqtt.feed(content)
            elif inner == _HANDSHAKE:
                if _FINISHED in self.handshake(content, overhead):
                    del self.keys[0]  # this side's next records: the traffic keys
            else:
                self.other(inner, overhead + len(content))
        else:
            raise ValueError(f"TLS: record type {kind} {self.direction}")

    def handshake(self, content: bytes, overhead: int) -> list[int]:
        """Counts one handshake record; -> the types of the messages it completed."""
        self.tally.parts["tls_handshake"] += overhead + len(content)
        self.tally.handshake[f"{self.direction} record headers, tags"] += overhead
        self.hs += content
        done = []
        while len(self.hs) >= 4:
            size = 4 + int.from_bytes(self.hs[1:4], "big")
            if len(self.hs) < size:
                break
            kind = self.hs[0]
            del self.hs[:size]
            name = HANDSHAKE_NAMES.get(kind, f"handshake{kind}")
            self.tally.handshake[f"{self.direction} {name}"] += size
            done.append(kind)
        return done

    def other(self, kind: int, size: int) -> None:
        name = "ChangeCipherSpec" if kind == _CCS else "alert"
        self.tally.parts["tls_handshake"] += size
        self.tally.handshake[f"{self.direction} {name}"] += size


def _records(data: bytes):
    # -> (type, header, body) for each whole record; a cut-off last record as type None.
    pos = 0
    while pos < len(data):
        if pos + _RECORD_HEADER > len(data):
            yield None, data[pos:], b""
            return
        kind, _, length = struct.unpack_from(">BHH", data, pos)
        end = pos + _RECORD_HEADER + length
        if end > len(data):
            yield None, data[pos:], b""
            return
        yield kind, data[pos:pos + _RECORD_HEADER], data[pos + _RECORD_HEADER:end]
        pos = end


def _hello(body: bytes, direction: str) -> tuple[bytes, int | None]:
    # ClientHello or ServerHello (the first handshake record each way):
    # -> (random, cipher suite (ServerHello only)).
    if body[0] != (1 if direction == UP else 2):
        raise ValueError(f"TLS: expected a hello {direction}, got handshake type {body[0]}")
    random = body[6:38]
    if direction == UP:
        return random, None
    if random == _HRR_RANDOM:
        raise ValueError("TLS: HelloRetryRequest (not measured by this bench)")
    sid_len = body[38]
    pos = 39 + sid_len
    suite = struct.unpack_from(">H", body, pos)[0]
    pos += 3  # cipher suite, compression
    ext_end = pos + 2 + struct.unpack_from(">H", body, pos)[0]
    pos += 2
    version = None
    while pos < ext_end:
        ext, size = struct.unpack_from(">HH", body, pos)
        if ext == 0x002B:  # supported_versions: the version the server chose
            version = struct.unpack_from(">H", body, pos + 4)[0]
        pos += 4 + size
    if version != _TLS13:
        raise ValueError("TLS: the broker did not choose TLS 1.3 (only 1.3 is decoded here)")
    if suite not in _SUITES:
        raise ValueError(f"TLS: cipher suite 0x{suite:04x} not known here")
    return random, suite


def _secret(secrets: dict[tuple[str, bytes], bytes], label: str, client_random: bytes) -> bytes:
    try:
        return secrets[(label, client_random)]
    except KeyError:
        raise ValueError(f"TLS: no {label} in the key log for the session whose client "
                         f"random is {client_random.hex()[:16]}...") from None


def _first_hello(data: bytes, direction: str) -> tuple[bytes, int | None] | None:
    for kind, _, body in _records(data):
        if kind == _HANDSHAKE:
            return _hello(body, direction)
    return None


def split_tls(sessions: list[Session], secrets: dict[tuple[str, bytes], bytes],
              tally: Tally) -> None:
    """TLS 1.3 sessions: every record decrypted with the key log and split as the module
    docstring says."""
    for s in sessions:
        tally.sessions += 1
        up, down = bytes(s.up), bytes(s.down)
        client, server = _first_hello(up, UP), _first_hello(down, DOWN)
        for direction, data in ((UP, up), (DOWN, down)):
            keys = []
            # Else the session ended before any encrypted record; a server's hello names its
            # suite (_hello), a client's does not.
            if client and server and server[1] is not None:
                keys = [_Keys(server[1], _secret(secrets, label, client[0]))
                        for label in _SECRETS[direction]]
            d = _Direction(tally, direction, keys)
            for record in _records(data):
                d.record(*record)
            d.mqtt.finish()
