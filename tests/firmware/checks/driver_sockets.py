# Steps for the modem driver tests (tests/firmware/test_modem_*.py): sockets over
# each family's AT commands.
import asyncio

from modemfake import ms, oserror, show


async def round_trip(modem, fake, ch, closed_urc):
    modem.MAX_SEND = 4  # two send commands for five bytes
    sock = await modem.open_socket("broker.example", 1883, 30000)
    show("WROTE", await sock.write(b"hello"))
    buf = bytearray(3)
    got = b""
    for _ in range(2):  # 3 + 2 bytes from one read command
        n = await sock.read_into(buf)
        got += bytes(buf[:n])
    show("READ", got.decode())
    fake.later(20, closed_urc)
    show("EOF", [await sock.read_into(buf), sock.closed])
    try:
        await sock.write(b"late")
    except OSError as e:
        show("LATE", oserror(e))
    await sock.close()
    try:
        await sock.read_into(buf)
    except OSError as e:
        show("AFTER_CLOSE", oserror(e))
    again = await modem.open_socket("broker.example", 1883, 30000)
    show("REUSED", [again is sock, again.closed])


async def open_failures(modem, fake, ch):
    try:
        await modem.open_socket("broker.example", 1883, 30000)
    except OSError as e:
        show("FAIL", oserror(e))
    sock = await modem.open_socket("broker.example", 1883, 30000)
    show("LINK", sock.link)
    try:
        await modem.open_socket("broker.example", 1883, 30000)
    except OSError as e:
        show("ALL_HELD", oserror(e))
    for host, port in (('bad"host', 1883), ("broker.example", 0)):
        try:
            await modem.open_socket(host, port, 30000)
        except OSError as e:
            show("BAD", oserror(e))


async def _open_and_write_hello(modem):
    """Opens a socket and writes to it, showing how the write fails and how long it took as
    "FAIL"; returns the socket."""
    sock = await modem.open_socket("broker.example", 1883, 30000)
    t0 = ms()
    try:
        await sock.write(b"hello")
    except OSError as e:
        show("FAIL", oserror(e) + [ms() - t0])
    return sock


async def send_fail(modem, fake, ch):
    sock = await _open_and_write_hello(modem)
    show("RETRY", await sock.write(b"hello"))


async def prompt_error(modem, fake, ch):
    await _open_and_write_hello(modem)
    show("NEXT", await ch.command("AT+CSQ"))


async def closed_on_open(modem, fake, ch):
    sock = await modem.open_socket("broker.example", 1883, 30000)
    await asyncio.sleep_ms(50)
    show("CLOSED", sock.closed)
    show("READ", await sock.read_into(bytearray(8)))
    try:
        await sock.write(b"hello")
    except OSError as e:
        show("WRITE", oserror(e))
    await sock.close()


async def direct_push(modem, fake, ch):
    sock = await modem.open_socket("broker.example", 1883, 30000)
    fake.later(5, b'\r\n+QIURC: "recv",0,13\r\nhel')
    fake.later(15, b'lo\r\nOK\r\n\r\n')
    fake.later(25, b'\r\n+QIURC: "recv",0,5\r\nworld')
    buf = bytearray(64)
    got = b""
    while len(got) < 18:
        n = await sock.read_into(buf)
        got += bytes(buf[:n])
    show("GOT", got.decode())
    show("NEXT", await ch.command("AT+CSQ"))
    fake.later(5, b'\r\n+QIURC: "recv",0,600\r\n')
    for i in range(6):  # at the wire's pace: the UART's buffer holds 256 bytes
        fake.later(10 + 10 * i, b"x" * 100)
    got = 0
    try:
        while True:
            got += await sock.read_into(buf)
    except OSError as e:
        show("OVERFLOW", [got] + oserror(e))
    await sock.close()


async def two_writers(modem, fake, ch):
    # Two tasks write at once (the uplink's PUBACK and a command's reply): each send ends on
    # its own result, though the first one's comes late.
    sock = await modem.open_socket("broker.example", 1883, 30000)

    async def write(data):
        try:
            return await sock.write(data)
        except OSError as e:
            return oserror(e)

    show("WROTE", await asyncio.gather(write(b"ack!"), write(b"reply")))
