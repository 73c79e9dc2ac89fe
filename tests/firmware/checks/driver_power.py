# Steps for the modem driver tests (tests/firmware/test_modem_drivers.py): power through
# the board's pins, the channel's sync, and the modem restarting by itself.
import asyncio

import _simcore
import _simworld
from modemfake import BOARD, ms, oserror, show


async def power_through_pins(modem, fake, ch):
    pins = BOARD["pins"]
    status, pwrkey = pins["status"], pins["pwrkey"]
    on = 0 if status["active"] == "low" else 1
    press = 0 if pwrkey["active"] == "low" else 1
    _simworld.drive_pin(status["pin"], 1 - on)  # the modem is off
    pulses = []
    t = [0]

    def set_status(level):
        _simworld.drive_pin(status["pin"], level)

    def on_pwrkey(level):
        if level == press:
            t[0] = _simcore.now_us
            return
        pulses.append((_simcore.now_us - t[0]) // 1000)
        # PWRKEY toggles the modem: it boots (STATUS in 2 s) or shuts down (1 s)
        booting = modem.is_powered() is False
        _simcore.at(_simcore.now_us + (2000000 if booting else 1000000),
                    lambda: set_status(on if booting else 1 - on))
    _simworld.watch_pin(pwrkey["pin"], on_pwrkey)
    fake.hooks[b"AT+CPOF\r"] = fake.hooks[b"AT+QPOWD\r"] = lambda: _simcore.at(
        _simcore.now_us + 1500000, lambda: set_status(1 - on))
    supply = []
    if pins.get("modem_power"):
        _simworld.watch_pin(pins["modem_power"]["pin"], supply.append)
    resets = []
    if pins.get("reset"):
        r = pins["reset"]
        _simworld.watch_pin(r["pin"], lambda level: resets.append((level, _simcore.now_us)))
    t0 = ms()
    await modem.power_on()
    show("ON", [pulses, modem.is_powered(), ms() - t0])
    await modem.power_on()  # already on: no pulse, which would switch it off
    show("AGAIN", pulses)
    await modem.power_off()
    show("OFF", [pulses, modem.is_powered(), supply])
    if pins.get("reset"):
        await modem.power_on()
        await modem.hard_reset()
        show("RESET", [(resets[-1][1] - resets[-2][1]) // 1000, resets[-1][0]])


async def sync_twice(modem, fake, ch):
    await modem.sync()
    await modem.sync()


async def restart_urcs(modem, fake, ch, boot):
    modem.link_event = asyncio.Event()
    await modem.power_on()
    fake.later(100, b"\r\nRDY\r\n\r\n+CPIN: READY\r\n")
    await asyncio.sleep_ms(500)
    show("EXPECTED", [modem.status["resets"], modem.status["boot"],
                      modem.status["sim"], modem.link_event.is_set()])
    modem.status["bearer"] = True
    sock = await modem.open_socket("broker.example", 1883, 30000)
    await asyncio.sleep(40)
    fake.later(10, b"\r\nRDY\r\n\r\n+CPIN: NOT READY\r\n")
    fake.later(2000, b"\r\n" + boot.encode() + b"\r\n")
    await asyncio.wait_for_ms(modem.link_event.wait(), 1000)
    await asyncio.sleep_ms(3000)
    show("RESTARTED", [modem.status["resets"], modem.status["boot"],
                       modem.status["sim"], modem.status["bearer"], modem.lost])
    try:
        await sock.write(b"x")
    except OSError as e:
        show("SOCKET", oserror(e))
