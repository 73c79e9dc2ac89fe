# Telemetry on the air: CBOR (RFC 8949), and the same structure as JSON for debugging.
#
# A telemetry message, schema version 1, is one array of five:
#   [1, mseq, t0, events, readings]
#   mseq      per-device message sequence, +1 per delivered message (a resend keeps its number)
#   t0        unix time (s) the times in the message count from
#   events    [[seq, dt, kind, name, delta, total(, info)], ...]: the counter's events, kind
#             0 use, 1 service, 2 adjust
#   readings  [] or [first_rseq, [dt, {key: value, ...}], ...]: readings first_rseq, +1, ...
# In CBOR the two lists are indefinite-length arrays, so a message is written item by item in
# one pass. Integers take the shortest form, other numbers a half float when that is exact,
# else a single float (readings are kept as single floats on flash). JSON is the same, as
# {"v", "n", "t", "e", "r"}. host/musket/broker.py decodes both.
import json
import struct

SCHEMA = 1
KINDS = {"use": 0, "service": 1, "adjust": 2}
_ROOM_FOR_END = 8  # closing the two lists and the object


def reading_record(t, values):
    # A reading as the queue keeps it: time u32, then per value: key length u8, key, float32.
    out = bytearray(struct.pack("<I", int(t)))
    for k in values:
        kb = k.encode()
        out.append(len(kb))
        out.extend(kb)
        out.extend(struct.pack("<f", values[k]))
    return out


def _head(out, major, n):
    major <<= 5
    if n < 24:
        out.append(major | n)
    elif n < 0x100:
        out.append(major | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major | 25)
        out.extend(struct.pack(">H", n))
    else:
        out.append(major | 26)
        out.extend(struct.pack(">I", n))


def cbor(out, v):
    # Appends v (int below 2**32 in size, float, str, None, bool, list/tuple, dict) to out.
    if v is None:
        out.append(0xF6)
    elif v is True or v is False:
        out.append(0xF5 if v else 0xF4)
    elif isinstance(v, int):
        if v >= 0:
            _head(out, 0, v)
        else:
            _head(out, 1, -1 - v)
    elif isinstance(v, float):
        if v == int(v) and -0x80000000 <= v < 0x80000000:
            cbor(out, int(v))
        elif struct.unpack(">e", struct.pack(">e", v))[0] == v:
            out.append(0xF9)
            out.extend(struct.pack(">e", v))
        else:
            out.append(0xFA)
            out.extend(struct.pack(">f", v))
    elif isinstance(v, str):
        b = v.encode()
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(v, dict):
        _head(out, 5, len(v))
        for k in v:
            cbor(out, k)
            cbor(out, v[k])
    else:
        _head(out, 4, len(v))
        for x in v:
            cbor(out, x)


def _item(v, as_json, first):
    if as_json:
        return (b"" if first else b",") + json.dumps(v).encode()
    out = bytearray()
    cbor(out, v)
    return out


def encode(mseq, t0, events, readings, room, as_json=False):
    # -> (payload, seq of the last event in it, rseq of the last reading in it), holding as
    # many events (first: they must arrive) and then readings, oldest first, as fit in room
    # bytes. events: (seq, time_s, kind, name, delta, total, info) tuples; readings: (rseq,
    # reading_record) pairs. (payload, 0, 0) when nothing fits or there is nothing.
    t0 = int(t0)
    if as_json:
        out = bytearray(b'{"v":%d,"n":%d,"t":%d,"e":[' % (SCHEMA, mseq, t0))
    else:
        out = bytearray(b"\x85")
        for v in (SCHEMA, mseq, t0):
            cbor(out, v)
        out.append(0x9F)
    room -= _ROOM_FOR_END
    last_e = last_r = 0
    for seq, t, kind, name, delta, total, info in events:
        fields = [seq, int(t) - t0, KINDS.get(kind, kind), name, delta, total]
        if info is not None:
            fields.append(info)
        item = _item(fields, as_json, not last_e)
        if len(out) + len(item) > room:
            break
        out.extend(item)
        last_e = seq
    out.extend(b'],"r":[' if as_json else b"\xff\x9f")
    for rseq, rec in readings:
        t = struct.unpack_from("<I", rec, 0)[0]
        values = {}
        pos = 4
        while pos < len(rec):
            n = rec[pos]
            values[bytes(rec[pos + 1:pos + 1 + n]).decode()] = struct.unpack_from(
                "<f", rec, pos + 1 + n)[0]
            pos += 5 + n
        item = _item([t - t0, values], as_json, False)
        head = b"" if last_r else _item(rseq, as_json, True)
        if len(out) + len(head) + len(item) > room:
            break
        out.extend(head)
        out.extend(item)
        last_r = rseq
    out.extend(b"]}" if as_json else b"\xff")
    return out, last_e, last_r
