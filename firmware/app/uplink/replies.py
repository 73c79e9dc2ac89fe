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

from app import store
from micropython import const

REPLIES_MAX = const(4)  # command replies waiting to be sent; the reader waits for room
# Replies held until their PUBACK: a burst of queued commands comes before the PUBACKs of
# their replies. Beyond these, the oldest sent one leaves RAM (a stored one waits on flash).
_REPLIES_HELD = const(16)
_REPLY_BYTES_HELD = const(2048)
REPLY_WAIT_MS = const(50)
_MEMORY_TRIES = const(100)  # a command the heap cannot serve: tried for 5 s (REPLY_WAIT_MS)


class Replies:
    # The replies held in RAM: [id or None, payload, pid (0 until first sent), stored, ticks_ms
    # sent in this session or -1, acknowledged]; `load` says stored ones may wait on flash
    # (from before a reboot, or beyond what RAM holds). A stored reply let go before its
    # PUBACK (let_go) keeps its entry with the payload None: the PUBACK still marks it
    # delivered, and it is not loaded from flash again while the session lasts.
    def __init__(self, log):
        self.log = log
        self.held = []
        self.load = True

    def resend(self):
        # A new session: unacknowledged replies go again, and stored ones a cut session left
        # only on flash (those let go from RAM among them).
        i = 0
        while i < len(self.held):
            entry = self.held[i]
            if entry[1] is None:
                self.held.pop(i)
                continue
            entry[4] = -1
            i += 1
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
        # Room is made first: sent ones leave RAM, oldest first, beyond the held limits.
        count = 0
        held = len(data)
        for entry in self.held:
            if entry[1] is not None:
                count += 1
                held += len(entry[1])
        while count >= _REPLIES_HELD or held > _REPLY_BYTES_HELD:
            freed = self.let_go()
            if freed < 0:
                break
            count -= 1
            held -= freed
        self.held.append([cid, data, 0, stored, -1, False])

    def acked(self, pid):
        # A PUBACK: -> whether it was a held reply's.
        for entry in self.held:
            if entry[2] == pid and entry[4] >= 0:
                entry[5] = True
                return True
        return False

    def oldest_unacked(self):
        # -> where in held the oldest reply sent in this session and not acknowledged is, or
        # -1: the one whose PUBACK is awaited longest (a let-go one too).
        for i, entry in enumerate(self.held):
            if entry[4] >= 0 and not entry[5]:
                return i
        return -1

    def let_go(self):
        # The held replies are full of ones sent and not yet acknowledged: the oldest one's
        # payload leaves RAM; -> the bytes freed, or -1 when none can go. A stored one keeps
        # its entry until its PUBACK, which marks it delivered on flash: sending it again
        # from flash in this session would answer its command twice, as the PUBACK of a
        # reply sent comes while the session lasts. Only a new session sends it again
        # (resend). Another was sent once. An acknowledged one stays for settle, which
        # records it.
        i = 0
        while i < len(self.held):
            entry = self.held[i]
            if entry[4] >= 0 and not entry[5] and entry[1] is not None:
                break
            i += 1
        else:
            return -1
        freed = len(entry[1])
        if entry[3]:
            entry[1] = None
        else:
            self.held.pop(i)
            self.log.warning("uplink", "reply %s sent, its PUBACK no longer awaited" % entry[0])
        return freed

    def settle(self):
        # Acknowledged replies leave RAM, a stored one once it is marked delivered on flash:
        # after a MemoryError (paced) it is tried again and nothing is lost or sent twice.
        for entry in self.held:
            if entry[5]:
                break
        else:
            return
        from app import unload
        from app.uplink.commands import delivered

        try:
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
        try:
            found = waiting([e[0] for e in self.held], room)
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


async def command_reply(command_topic, log, replies, wake, t, payload, size, lines=None,
                        room=0):
    # -> (the reply, whether it is stored on flash, whether the command asks for a reboot).
    # The command modules are loaded for it and let go after it. Each step is paced (paced):
    # a burst of commands waits for the heap instead of losing the session. lines: the
    # client, whose read_line gives the message's lines; a message that may be a batch of
    # commands (a line break, or too large to keep) goes to app.uplink.batch, loaded for it;
    # room: the bytes a batch's reply may take.
    from app import unload

    try:
        commands = await paced(replies, wake, _commands, command_topic, log)
        reply = None
        if lines is not None and t == command_topic and _may_be_batch(payload):
            run_batch = await paced(replies, wake, _batch_runner)
            try:
                reply = await run_batch(commands, payload, size, lines, room, paced, replies,
                                        wake)
            finally:
                del run_batch
        if reply is None:
            reply = await paced(replies, wake, commands.start, t, payload, size)
            if reply is None:
                result = await paced(replies, wake, commands.run)
                reply = await paced(replies, wake, commands.finish, result)
        return reply, commands.stored, commands.reboot
    finally:
        unload("uplink.commands", "uplink.batch", "config")


def _batch_runner():
    from app.uplink.batch import run_batch

    return run_batch


def _may_be_batch(payload):
    # A batch's first line ends with a line break; one larger than the receive buffer is
    # read from the socket (payload None).
    if payload is None:
        return True
    for byte in payload:
        if byte == 10:
            return True
    return False


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
