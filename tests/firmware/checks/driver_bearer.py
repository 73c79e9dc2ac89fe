# Steps for the modem driver tests (tests/firmware/test_modem_*.py): bringing the
# bearer up, and networks that refuse it.
import asyncio

from app.modem.at import ATError
from app.modem.replies import ModemError
from modemfake import failure, ms, show


async def attach(modem, fake, ch):
    t0 = ms()
    await modem.attach()
    show("UP", [modem.status["bearer"], ms() - t0 >= 800, modem.status["ip"],
                modem.status["operator"]])


async def attach_once(modem, fake, ch):
    await modem.attach()
    show("UP", [modem.status["bearer"], modem.status["ip"]])


async def attach_refused(modem, fake, ch):
    for tag in ("DENIED", "SMS", "TIMEOUT"):
        t0 = ms()
        try:
            await modem.attach()
            show(tag, "attached")
        except (ModemError, ATError) as e:
            show(tag, failure(e) + [ms() - t0, modem.status["bearer"]])
        show(tag + "_CEER", modem.status["ceer"])
    show("AFTER", await modem.registration())


async def sim7000_bearer(modem, fake, ch):
    modem.link_event = asyncio.Event()
    await modem.set_apn("iot.example")
    await modem.attach()
    show("UP", [modem.status["bearer"], modem.status["ip"]])
    fake.later(10, b"\r\n+APP PDP: DEACTIVE\r\n")
    await asyncio.wait_for_ms(modem.link_event.wait(), 1000)
    show("LOST", [modem.status["bearer"], modem.status["ip"], modem.lost])
    await modem.detach()
