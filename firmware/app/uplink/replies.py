# Command replies, from the command that asks for one until the broker acknowledges it, and the
# pacing of a command's steps while the heap cannot serve them.
#
# A reply is queued by the client's reader (the uplink's on_message) and sent by the session
# loop at QoS 1 without waiting, so that the reader stays free to take the PUBACKs. A reply
# with a command id is on flash first (app.uplink.commands), so that neither a reconnect nor a
# reboot loses it; only a reply's PUBACK lets it go from RAM and marks it delivered on flash.
# Commands are rare: their module (and the config schema it may load) is loaded for each use
# and let go after it.
import asyncio
import gc
import time

from app import store
from app.uplink.mqtt import ACK_TIMEOUT_MS
from micropython import const

REPLIES_MAX = const(4)  # command replies waiting to be sent; the reader waits for room
# Replies held until their PUBACK: a burst of queued commands comes before the PUBACKs of
# their replies. Beyond these, the oldest sent one leaves RAM (a stored one waits on flash).
_REPLIES_HELD = const(16)
_REPLY_BYTES_HELD = const(2048)
# Stored replies let go from RAM whose PUBACK may still come: a late PUBACK marks one delivered
# rather than have it sent again from flash (a reply each command, exactly once).
_GONE = const(8)
REPLY_WAIT_MS = const(50)
_MEMORY_TRIES = const(100)  # a command the heap cannot serve: tried for 5 s (REPLY_WAIT_MS)


class Replies:
    # The replies held in RAM: [id or None, payload, pid (0 until first sent), stored, ticks_ms
    # sent in this session or -1, acknowledged]; `load` says stored ones may wait on flash
    # (from before a reboot, or beyond what RAM holds).
    def __init__(self, log):
        self.log = log
        self.held = []
        self.load = True
        # The let-go stored replies: [pid (0: a free slot), id, ticks_ms sent, acknowledged]
        # each, made once, so that letting one go, which a MemoryError calls for, allocates
        # nothing.
        self._gone = [[0, None, 0, False] for _ in range(_GONE)]  # type: list

    def resend(self):
        # A new session: unacknowledged replies go again, and stored ones a cut session left
        # only on flash (a let-go one's PUBACK no longer comes).
        for entry in self.held:
            entry[4] = -1
        for slot in self._gone:
            if not slot[3]:
                slot[0] = 0
        self.load = True

    def unsent(self):
        n = 0
        for entry in self.held:
            if entry[4] < 0:
                n += 1
        return n

    def next_unsent(self):
        for entry in self.held:
            if entry[4] < 0:
                return entry
        return None

    def add(self, cid, data, stored):
        # Room is made first: sent ones leave RAM, oldest first, beyond the held limits. A
        # stored reply that load_stored took from flash meanwhile (while the command's steps
        # waited for the heap) is held already, and goes once.
        if stored:
            for entry in self.held:
                if entry[0] == cid:
                    return
        held = len(data)
        for entry in self.held:
            held += len(entry[1])
        while len(self.held) >= _REPLIES_HELD or held > _REPLY_BYTES_HELD:
            gone = self.let_go()
            if gone is None:
                break
            held -= len(gone[1])
        self.held.append([cid, data, 0, stored, -1, False])

    def acked(self, pid):
        # A PUBACK: -> whether it was a held reply's, or a let-go one's (then settle marks it
        # delivered on flash, so that it is not sent again).
        for entry in self.held:
            if entry[2] == pid and entry[4] >= 0:
                entry[5] = True
                return True
        for slot in self._gone:
            if slot[0] == pid and not slot[3] and \
                    time.ticks_diff(time.ticks_ms(), slot[2]) < ACK_TIMEOUT_MS:
                slot[3] = True
                return True
        return False

    def oldest_unacked(self):
        # -> where in held the oldest reply sent in this session and not acknowledged is, or
        # -1: the one whose PUBACK is awaited longest, and the first to leave RAM (let_go).
        for i, entry in enumerate(self.held):
            if entry[4] >= 0 and not entry[5]:
                return i
        return -1

    def let_go(self):
        # The held replies are full of ones sent and not yet acknowledged: the oldest leaves
        # RAM. A stored one still waits on flash and goes again later; another was sent once.
        # An acknowledged one stays for settle, which records it.
        i = self.oldest_unacked()
        if i < 0:
            return None
        entry = self.held.pop(i)
        if entry[3]:
            self._remember_gone(entry)
            self.load = True
        else:
            self.log.warning("uplink", "reply %s sent, its PUBACK no longer awaited" % entry[0])
        return entry

    def _remember_gone(self, entry):
        # In a free slot, else in place of the oldest whose PUBACK has not come (that reply
        # may then go twice, as at-least-once allows); with every slot acknowledged and not
        # yet settled, it is not remembered.
        found = None
        for slot in self._gone:
            if not slot[0]:
                found = slot
                break
            if not slot[3] and (found is None or time.ticks_diff(slot[2], found[2]) < 0):
                found = slot
        if found is not None:
            # One item at a time: a four-way assignment would make a tuple.
            found[0] = entry[2]
            found[1] = entry[0]
            found[2] = entry[4]
            found[3] = False

    def settle(self):
        # Acknowledged replies leave RAM, a stored one once it is marked delivered on flash
        # (a let-go one's slot likewise): after a MemoryError (paced) it is tried again and
        # nothing is lost or sent twice.
        for entry in self.held:
            if entry[5]:
                break
        else:
            for slot in self._gone:
                if slot[0] and slot[3]:
                    break
            else:
                return
        from app import unload
        from app.uplink.commands import delivered

        try:
            for slot in self._gone:
                if slot[0] and slot[3]:
                    try:
                        delivered(slot[1])
                    except store.StoreError as e:
                        self.log.error("uplink", "reply delivered, not recorded: %s" % e)
                    slot[0], slot[3] = 0, False
            i = 0
            while i < len(self.held):
                entry = self.held[i]
                if not entry[5]:
                    i += 1
                    continue
                if entry[3]:
                    try:
                        delivered(entry[0])
                    except store.StoreError as e:
                        self.log.error("uplink", "reply delivered, not recorded: %s" % e)
                self.held.pop(i)
        finally:
            del delivered
            unload("uplink.commands")

    def load_stored(self):
        # Stored replies not acknowledged yet, as many as the RAM queue has room for.
        from app import unload
        from app.uplink.commands import waiting

        room = REPLIES_MAX - len(self.held)
        # The let-go ones whose PUBACK may still come stay on flash; one past ACK_TIMEOUT_MS
        # is forgotten, and loaded again.
        skip = [entry[0] for entry in self.held]
        for slot in self._gone:
            if slot[0] and not slot[3]:
                if time.ticks_diff(time.ticks_ms(), slot[2]) < ACK_TIMEOUT_MS:
                    skip.append(slot[1])
                else:
                    slot[0] = 0
        try:
            found = waiting(skip, room)
        except store.StoreError as e:
            self.log.error("uplink", "stored replies unreadable: %s" % e)
            found = ()
        finally:
            del waiting
            unload("uplink.commands")
        for cid, reply in found:
            self.held.append([cid, reply_bytes(reply), 0, True, -1, False])
        self.load = len(found) >= room


def reply_bytes(reply):
    # Without the spaces json.dumps puts after "," and ":" by default: bytes on the air.
    import json

    return json.dumps(reply, separators=(",", ":")).encode()


def _commands(command_topic, log):
    from app.uplink.commands import Commands

    return Commands(command_topic, log)


async def command_reply(command_topic, log, replies, wake, t, payload, size):
    # -> (the reply, whether it is stored on flash, whether the command asks for a reboot).
    # The command modules are loaded for it and let go after it. Each step is paced (paced):
    # a burst of commands waits for the heap instead of losing the session.
    from app import unload

    try:
        commands = await paced(replies, wake, _commands, command_topic, log)
        reply = await paced(replies, wake, commands.start, t, payload, size)
        if reply is None:
            result = await paced(replies, wake, commands.run)
            reply = await paced(replies, wake, commands.finish, result)
        return reply, commands.stored, commands.reboot
    finally:
        unload("uplink.commands", "config")


async def paced(replies, wake, work, *args):
    # work(*args), tried again while the heap cannot serve it (a burst of commands): each
    # time after a collection and a pause in which the session loop (woken by `wake`) sends
    # the waiting replies. The reader (which passes `replies`) waits meanwhile, so the
    # command's PUBACK does, and the broker holds the rest: back-pressure, not a lost
    # session. A MemoryError from the last try ends the session. A command's step that
    # failed for memory is tried again alone: its record on flash is as it was
    # (app.uplink.commands).
    for _ in range(_MEMORY_TRIES - 1):
        try:
            return work(*args)
        except MemoryError:
            if replies is not None:
                # The PUBACKs that would free the held replies wait behind this command
                # on the socket: a sent one leaves RAM now.
                replies.let_go()
            gc.collect()
            wake.set()
            await asyncio.sleep_ms(REPLY_WAIT_MS)
    return work(*args)
