"""What every part of the modem model shares: its states, limits, errors and argument parsing."""

# The modem's power states
OFF = 0
BOOTING = 1
ON = 2
STOPPING = 3

# A socket's states
L_OPEN = 1
L_CLOSED = 2  # closed by the peer; buffered data still readable
L_LOST = 3  # gone with the network or the power

DEFER = object()  # a handler that sends its final result itself


class CmdError(Exception):
    # A command fails: code None is a plain ERROR, a number a +CME ERROR per AT+CMEE.
    pass


def luhn(body):
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


def digits(rng, n):
    return "".join([str(rng.below(10)) for _ in range(n)])


def split_args(text):
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


def split_commands(text):
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


def arg_int(args, i, default=None, low=None, high=None):
    if i >= len(args) or args[i] == "":
        if default is None:
            raise CmdError(50)
        return default
    try:
        v = int(args[i])
    except ValueError:
        raise CmdError(50) from None
    if (low is not None and v < low) or (high is not None and v > high):
        raise CmdError(50)
    return v


def arg(args, i, default=None):
    if i >= len(args):
        if default is None:
            raise CmdError(50)
        return default
    return args[i]


def ring_put(ring, pos, src, n):
    # Copies the n bytes of src into the ring (a memoryview) from pos on, wrapping at its end.
    first = len(ring) - pos
    if n <= first:
        ring[pos:pos + n] = src
    else:
        src = memoryview(src)
        ring[pos:] = src[:first]
        ring[:n - first] = src[first:n]


def ring_get(ring, pos, dst, n):
    # Copies n bytes from the ring at pos on (wrapping at its end) into dst[:n].
    first = len(ring) - pos
    if n <= first:
        dst[:n] = ring[pos:pos + n]
    else:
        dst[:first] = ring[pos:]
        dst[first:n] = ring[:n - first]
