# Downloading an update bundle over MQTT (docs/ota.md, "Transfer"). The fleet offers a bundle
# with an "ota" command; the device pulls it chunk by chunk: it asks for the bytes from the
# end of what it holds (d/<id>/u: {"c": campaign, "at": offset, "n": length}), the chunk comes
# on its command topic as binary (0x00, offset u32 big-endian, the bytes), and goes to the end
# of one file on flash. The file's length is the checkpoint: after a dropped link or a reboot
# the next request starts there, so no byte that arrived is asked for again, and a chunk for
# any other offset (a repeat, a late one) is dropped. Complete, the file becomes the bundle
# the update's boot stage installs at the next boot (otaboot.py), and the device resets.
# An image bundle (the MicroPython firmware, about 1 MB compressed) does not fit the
# filesystem: its header and manifest go to that file, its payload into the app slot the image
# is for (app/ota/slotsink.py).
import asyncio
import json
import os
import time

from app import store
from micropython import const

OFFER = "/ota/offer.json"
PART = "/ota/bundle.part"
BUNDLE = "/ota/bundle"
CHUNK = const(240)  # bytes asked for at once: a chunk fits the uplink's receive buffer
CHUNK_HEAD = const(5)  # 0x00, offset u32
_REQUEST_AGAIN_MS = const(20000)  # a request whose chunk did not come is made again
_ROOM_MARGIN = const(16384)  # flash kept free beyond the bundle, for everything else
_CAMPAIGN_MAX = const(32)


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _free_bytes():
    st = os.statvfs("/")
    return st[0] * st[3]


class Download:
    def __init__(self, log):
        self.log = log
        try:
            self.offer = store.read_json(OFFER, None)  # {"c", "v", "size"} or None
        except store.StoreError as e:
            log.error("ota", "offer: %s" % e)
            self.offer = None
        self._sink = None
        self.done = False  # the whole bundle is on flash: the device resets to install it
        self._asked_at = -1  # offset of the request in flight
        self._asked_ms = 0
        self.reports = []  # what goes up on d/<id>/u next, as JSON-able dicts
        # Set once the broker has every step of the boot stage reported (boot_reports): a
        # version on trial confirms itself only then, and drops them from the state.
        self.phases_sent = asyncio.Event()
        self.phases_sent.set()
        # The "ota" section of the device's status: changed in place, as the status holds it.
        self.status = {"state": "idle"}
        if self.offer is not None:
            try:
                self._sink = _sink_for(self.offer)
            except OSError as e:
                log.error("ota", "offer: %s" % e)
                self.offer = None
        if self.offer is not None and (_size(BUNDLE) >= 0 or
                                       self._sink.held() == self.offer["size"]):
            # A cut came after the last chunk reached flash: before the bundle's rename, or
            # between it and the state's write. Nothing is left to fetch.
            self._complete()
        elif self.offer is not None:
            self._show("downloading", at=self._sink.held(), size=self.offer["size"])

    def _show(self, state, **more):
        self.status.clear()
        self.status["state"] = state
        self.status["campaign"] = self.offer["c"]
        self.status["version"] = self.offer["v"]
        self.status.update(more)

    # -- the offer (an "ota" command) --------------------------------------------------------

    def take_offer(self, offer):
        # -> why it is refused, or None. `offer`: {"campaign", "version", "size"}.
        campaign = offer.get("campaign")
        size = offer.get("size")
        if not isinstance(campaign, str) or not 0 < len(campaign) <= _CAMPAIGN_MAX:
            return "campaign: expected 1-%d characters" % _CAMPAIGN_MAX
        if not isinstance(offer.get("version"), str):
            return "version: expected a string"
        if not isinstance(size, int) or size <= 0:
            return "size: expected a positive number of bytes"
        if self.offer is not None and self.offer["c"] == campaign:
            return None  # offered again (a resent command): the download goes on
        if _size(BUNDLE) >= 0:
            return "an update waits to be installed"
        kind = offer.get("kind", "full")
        new = {"c": campaign, "v": offer["version"], "size": size, "kind": kind}
        try:
            sink = _sink_for(new)
        except OSError:
            return "board: no OTA app slot for an image (the board runs the plain layout)"
        room = sink.room()
        if room is None:
            # The whole bundle goes to the filesystem, less what another campaign left there.
            held = max(0, _size(PART))
            if size + _ROOM_MARGIN > _free_bytes() + held:
                return "no room: the bundle has %d bytes" % size
        elif size > room:
            return "no room: the bundle has %d bytes, the app slot takes %d" % (size, room)
        sink.forget()  # another campaign's bytes
        try:
            os.mkdir("/ota")
        except OSError:
            pass  # it exists
        self.offer = new
        self._sink = sink
        store.write_json(OFFER, self.offer)
        self._asked_at = -1
        self._show("downloading", at=0, size=size)
        self.log.info("ota", "downloading %s (%d bytes, campaign %s)"
                      % (offer["version"], size, campaign))
        return None

    # -- the transfer ------------------------------------------------------------------------

    def request(self):
        # -> the request to publish now (bytes), or None: none is due.
        if self.offer is None or self.done:
            return None
        at = self._sink.held()
        if at == self._asked_at and \
                time.ticks_diff(time.ticks_ms(), self._asked_ms) < _REQUEST_AGAIN_MS:
            return None
        self._asked_at = at
        self._asked_ms = time.ticks_ms()
        n = min(CHUNK, self.offer["size"] - at)
        return json.dumps({"c": self.offer["c"], "at": at, "n": n}).encode()

    def due_ms(self):
        # Milliseconds until a request is due again (the session loop's wait), or None.
        if self.offer is None or self.done:
            return None
        if self._asked_at < 0:
            return 0
        return max(0, _REQUEST_AGAIN_MS - time.ticks_diff(time.ticks_ms(), self._asked_ms))

    def take_chunk(self, payload, size):
        # A chunk from the command topic (payload[0] == 0). -> True if it was the one awaited.
        if self.offer is None or self.done or size < CHUNK_HEAD:
            return False
        at = (payload[1] << 24) | (payload[2] << 16) | (payload[3] << 8) | payload[4]
        held = self._sink.held()
        n = size - CHUNK_HEAD
        if at != held or n <= 0 or held + n > self.offer["size"]:
            return False  # a repeat, a late one, or more than was offered
        self._sink.write(memoryview(payload)[CHUNK_HEAD:size])  # the new checkpoint
        held += n
        self._asked_at = -1
        self.status["at"] = held
        if held == self.offer["size"]:
            self._complete()
        return True

    def _complete(self):
        # The bundle is whole: the boot stage installs it at the next boot. Its state is
        # written last: a cut before leaves a complete bundle (or part file) that the offer,
        # still on flash, finds again at the next start, which completes it at once.
        import otastate

        self._sink.finish()
        if _size(PART) >= 0:
            os.rename(PART, BUNDLE)
        state = otastate.load()
        state["phase"] = otastate.INSTALL
        state["campaign"] = self.offer["c"]
        otastate.save(state)
        os.remove(OFFER)
        self.done = True
        self._show("downloaded")
        self.reports.append({"c": self.offer["c"], "state": "downloaded",
                             "v": self.offer["v"]})
        self.log.info("ota", "%s downloaded: installing at the next boot" % self.offer["v"])

    def boot_reports(self, state):
        # What the boot stage's state holds for the fleet (otaboot.py): the steps of the
        # update it passed, then how the update ended. The steps are dropped from the state
        # with the next write it needs anyway (the confirmation, the outcome's report), so
        # that their acknowledgements cost no flash write and no heap for the boot stage.
        last = state.get("last") or {}
        campaign = state.get("campaign") or last.get("campaign")
        version = state.get("trial", {}).get("version") or last.get("version")
        for phase in state.get("phases", ()):
            self.reports.append({"c": campaign, "state": phase, "v": version})
            self.phases_sent.clear()
        report = outcome_report(state)
        if report is not None:
            self.reports.append(report)

    def reported(self, report):
        # The broker acknowledged `report`. One about an update's outcome (from the boot
        # stage's state) is marked sent there, so that it goes up once; so are the steps that
        # went before it.
        done = report.get("state")
        if done in _PHASES:
            if not any(r.get("state") in _PHASES for r in self.reports):
                self.phases_sent.set()
        elif done in ("confirmed", "rolled_back", "rejected"):
            import otastate

            state = otastate.load()
            last = state.get("last")
            if last is not None and last.get("campaign") == report.get("c"):
                last["reported"] = True
                state.pop("phases", None)
                otastate.save(state)


_PHASES = ("verifying", "staged", "booting")  # the boot stage's steps (otaboot.py)


class _FileSink:
    # Where a bundle's bytes go as they arrive: PART, whose length is the checkpoint.

    def held(self):
        return max(0, _size(PART))

    def room(self):
        return None  # the filesystem's

    def write(self, data):
        with open(PART, "ab") as f:  # the close commits it
            f.write(data)

    def forget(self):
        try:
            os.remove(PART)
        except OSError:
            pass

    def finish(self):
        pass


def _sink_for(offer):
    # Raises OSError for an image on a board without an OTA app slot.
    if offer.get("kind") == "image":
        from app.ota.slotsink import SlotSink

        return SlotSink(PART, offer["size"])
    return _FileSink()


def outcome_report(state):
    # What the boot stage's state says about the last update, if the fleet has not heard it:
    # a report for d/<id>/u, or None.
    last = state.get("last")
    if not last or last.get("reported") or not last.get("campaign"):
        return None
    report = {"c": last["campaign"], "state": last["result"], "v": last.get("version")}
    if last.get("reason"):
        report["reason"] = last["reason"]
    return report
