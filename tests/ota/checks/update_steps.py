# The device's side of the power-cut sweeps of an update's download and confirmation
# (tests/updates.py, bench/ota_power_cuts.py): the firmware's own download and trial code,
# driven here without a broker, with the counter committing a use between its writes. Each
# step prints what it committed once count() returned ("COMMITTED <total>"), so the host knows
# what a cut may not take away.
import asyncio
import json

from app import counter
from app.log import Log
from app.ota import trial
from app.ota.download import Download

FEED = "/feed/bundle"  # the bundle as the fleet would serve it, put on flash by the host
CAMPAIGN = "cuts"


def _count(counters):
    counters.count("brews", 1)
    print("COMMITTED", counters.totals["brews"])


def _chunk_for(request, feed, buf):
    # The fleet's answer to a request: 0x00, the offset (u32 big-endian), the bytes asked for.
    asked = json.loads(request)
    at = asked["at"]
    feed.seek(at)
    n = feed.readinto(memoryview(buf)[5:5 + asked["n"]])
    buf[0] = 0
    buf[1:5] = at.to_bytes(4, "big")
    return n + 5


def download(version, chunks=-1, kind="full"):
    # Takes the offer (again, after a cut: the same campaign goes on from the checkpoint)
    # and pulls the bundle chunk by chunk, committing a use after every chunk; given
    # `chunks`, stops after that many, as a download the link left part way. `kind` is the
    # bundle's, as the fleet's offer states it.
    import otastate

    counters = counter.Counters([])
    if otastate.load()["phase"] != otastate.IDLE:
        print("DOWNLOADED")  # the cut came after the download completed
        return
    dl = Download(Log(echo=False))
    with open(FEED, "rb") as feed:
        size = feed.seek(0, 2)
        refused = dl.take_offer({"campaign": CAMPAIGN, "version": version, "size": size,
                                 "kind": kind})
        if refused:
            print("REFUSED", refused)
            return
        buf = bytearray(5 + 240)
        while not dl.done and chunks != 0:
            chunks -= 1
            request = dl.request()
            if request is None:
                print("NO REQUEST")
                return
            dl.take_chunk(buf, _chunk_for(request, feed, buf))
            _count(counters)
    print("DOWNLOADED" if dl.done else "HELD %d" % dl.status["at"])


def confirm():
    # The version on trial confirms itself as app/main.py has it do once the broker
    # acknowledged a session, with a use committed before and after.
    counters = counter.Counters([])
    _count(counters)
    session_up = asyncio.Event()
    session_up.set()
    asyncio.run(trial.run(session_up, True, 30, Download(Log(echo=False)), Log(echo=False)))
    _count(counters)
    print("CONFIRMED")


def counts():
    print("COUNTS", counter.Counters([]).totals.get("brews", 0))


def trial_boot():
    # What main.py does first at every boot: the update's boot stage. It may install a
    # waiting bundle and reset; on a version on trial it counts the boot.
    import otaboot

    state = otaboot.run()
    print("PHASE", state["phase"])


def trial_boot_and_confirm():
    # A trial's boot that reaches the broker: the boot stage, then the confirmation, in one
    # boot (a reset in between would be the bootloader's cue to roll an image back).
    trial_boot()
    confirm()


def offer(kind, size):
    # An offer as the fleet makes it, for a bundle of `size` bytes of `kind`: taken or not.
    refused = Download(Log(echo=False)).take_offer(
        {"campaign": CAMPAIGN, "version": "1.29.0", "size": size, "kind": kind})
    print("REFUSED %s" % refused if refused else "TAKEN")
