# Steps for the modem driver tests (tests/firmware/test_modem_*.py): identity,
# signal, registration, the APN, and errors, garbage and timeouts in replies.
import asyncio

from app.modem.at import ATTimeout
from app.modem.replies import ModemError
from modemfake import failure, ms, show


async def identity(modem, fake, ch):
    show("ID", await modem.identity())
    show("STATUS", [modem.status["identity"], modem.status["sim"]])


async def identity_faults(modem, fake, ch):
    show("HEX", (await modem.identity())["iccid"])
    for tag in ("LUHN", "GONE", "NOSIM"):
        try:
            await modem.identity()
        except ModemError as e:
            show(tag, failure(e) + [modem.status["sim"]])


async def signal_twice(modem, fake, ch):
    show("SERVICE", await modem.signal())
    show("NONE", await modem.signal())


async def registration_and_urc(modem, fake, ch):
    modem.link_event = asyncio.Event()
    reg = await modem.registration()
    show("REG", reg)
    show("URC_BEFORE", modem.link_event.is_set())
    # Read again unchanged: the status keeps its dict, and the read returns that one.
    again = await modem.registration()
    show("KEPT", again is reg and modem.status["registration"] is reg)
    urc = b'\r\n+CEREG: 3,"1A2B","01A2D001",7,0,15\r\n'
    fake.later(10, urc)
    await asyncio.wait_for_ms(modem.link_event.wait(), 1000)
    denied = modem.status["registration"]
    show("URC", denied)
    # The same URC again: heard (the event), the kept dict unchanged.
    modem.link_event.clear()
    fake.later(10, urc)
    await asyncio.wait_for_ms(modem.link_event.wait(), 1000)
    show("URC_KEPT", modem.status["registration"] is denied)


async def set_apn(modem, fake, ch):
    await modem.set_apn("iot.example")
    await modem.set_apn("iot.example")
    try:
        await modem.set_apn('bad"apn')
    except ModemError as e:
        show("BAD", failure(e))


async def errors_and_timeouts(modem, fake, ch, ncme):
    for i in range(ncme + 2):
        try:
            await modem.identity()
            show("E%d" % i, "no error")
        except ModemError as e:
            show("E%d" % i, failure(e))
    t0 = ms()
    try:
        await modem.identity()
    except ATTimeout as e:
        show("TIMEOUT", failure(e) + [ms() - t0])
    show("ID", await modem.identity())
