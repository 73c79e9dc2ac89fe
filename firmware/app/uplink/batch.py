# Batches of commands: several commands for this device in one message, a line each, after a
# first line {"id", "op": "batch", "n": commands} (musket.batches packs them on the host).
# Loaded for a batch only, and let go after it (app.uplink.replies).
#
# The message is read a line at a time (MQTTClient.read_line: from the receive buffer, or
# from the socket when the batch is larger), so a batch takes no more memory than one
# command. Each command is checked, recorded, run and answered as it would be alone
# (app.uplink.commands), in order. The batch is one entry of the command record, under its
# own id, and its reply grows there as its commands are answered:
#   {"id", "ok": true, "n": commands answered, "r": [[index, ok, detail], ...]}
# r lists only the commands that failed (detail: why) or have more to say than success (a
# config's after_reboot keys); index counts from 0. While one runs, "at" names it: a batch
# sent again after a cut goes on after the commands answered, answers the one it cut
# "interrupted", and runs the rest; a batch that finished is answered from the record, as a
# repeated command is. A batch whose reply has no room left stops with "ok": false and
# "error"; the commands from "n" on did not run. An id inside a batch is remembered as part
# of its batch, not on its own.
import gc
import json

from app.uplink.commands import id_ok
from micropython import const

# Its commands are the ones that set values; status and ota replies are too large to share.
BATCHED = ("config", "counter", "reboot")
BATCH_MAX = const(24)  # commands in one batch
BATCH_BYTES = const(1280)  # a batch's payload: one TCP segment with its MQTT header
# Room a batch's reply keeps for a bare answer ([index, false],), "n" growing, a stop's
# "ok": false and "error", and "dup": true when it is sent again for a repeat.
_RESERVE = const(100)
_BARE = const(11)  # a bare answer: [23,false],


async def run_batch(commands, payload, size, lines, room, paced, *pace):
    # The message (payload: in the receive buffer, or None when it was larger) read as a
    # batch: -> its reply, or None when its first line does not say it is one (it is then one
    # command, read whole or refused as too large). lines: the client (read_line); room: the
    # bytes the reply may take; paced(*pace, work, *args) runs each step, waiting for the
    # heap when it cannot serve one.
    try:
        line = await lines.read_line()
    except ValueError:
        return None
    if line is None:
        return None
    head = await paced(*pace, _head, line)
    if head is None:
        return None
    batch = Batch(commands, room)
    reply = await paced(*pace, batch.start, head, size)
    if reply is not None:
        return reply
    index = 0
    while True:
        try:
            line = await lines.read_line()
        except ValueError:
            line = None  # too long: refused as that command
        else:
            if line is None:
                break
        # A collection first: a burst of batches is when the heap is short of blocks.
        gc.collect()
        step = await paced(*pace, batch.take_line, index, line)
        if step < 0:
            break
        if step:
            result = await paced(*pace, commands.run)
            await paced(*pace, batch.ran_line, result)
        index += 1
    return await paced(*pace, batch.finish)


def _head(line):
    # -> the first line, parsed, when it says the message is a batch; else None.
    try:
        head = json.loads(bytes(line))
    except (ValueError, UnicodeError):
        return None
    return head if isinstance(head, dict) and head.get("op") == "batch" else None


def _compact(obj):
    return json.dumps(obj, separators=(",", ":"))


class Batch:
    # One batch's steps over the command record (app.uplink.commands.Commands). Each step may
    # be tried again after a MemoryError (paced): what it answers is answered once, and its
    # write goes again.
    def __init__(self, commands, room):
        self.commands = commands
        self.room = room
        self.reply = None  # the batch's reply, as it grows
        self._used = 0  # its bytes
        self._expected = BATCH_MAX  # the commands the batch says it holds

    def start(self, head, size):
        # -> the batch's reply when it is answered without running (refused, or a repeat of
        # one that finished); None once it is recorded, and take_line (with the command's
        # run and ran_line) follows for each line, then finish.
        commands = self.commands
        cid = head.get("id")
        if not id_ok(cid):
            return commands._no(None, "malformed: batch id must be 1-32 letters, digits, _ "
                                      "or -")
        if size > BATCH_BYTES:
            return commands._no(cid, "too large: %d bytes (a batch takes at most %d)"
                                % (size, BATCH_BYTES))
        progress = None
        for entry in commands.seen:
            if entry[0] == cid:
                if entry[1] is not None or not isinstance(entry[2], dict):
                    return commands._again(entry)
                progress = entry[2]  # cut before it finished: it goes on
        # Details are given room only while every command the batch says it holds ("n" of
        # its first line) still has room for a bare answer.
        expected = head.get("n")
        if type(expected) is int and 0 < expected <= BATCH_MAX:
            self._expected = expected
        self.reply = progress or {"id": cid, "ok": True, "n": 0}
        self._used = len(_compact(self.reply))
        if "at" in self.reply:
            del self.reply["at"]
            self._answer(False, "interrupted before it finished; not run again")
        self._record()
        return None

    def take_line(self, index, line):
        # The command at index (its JSON bytes, or None when the line was too long): -> 1
        # once it is recorded as running (the command's run and ran_line follow), 0 when it
        # is answered without running (refused, or answered before a cut), -1 when the batch
        # stops here.
        reply = self.reply
        if index < reply["n"]:
            return 0  # answered before a cut, or before a write that failed (the next has it)
        if index >= BATCH_MAX:
            return self._stop("more than %d commands" % BATCH_MAX)
        if self._used + _RESERVE > self.room:
            return self._stop("stopped before command %d: the reply has no room for more"
                              % index)
        commands = self.commands
        if line is None:
            cid, op, cmd, why = None, None, None, "too large: longer than a command may be"
        else:
            cid, op, cmd, why = commands._read(line, BATCHED)
        why = why or commands._check(op, cmd)
        if why:
            self._answer(False, why)
            self._record()
            return 0
        reply["at"] = index
        self._record()
        commands._started = (cid, op, cmd)
        return 1

    def ran_line(self, result):
        # The running command's reply (Commands.run), recorded in the batch's.
        reply = self.reply
        if "at" in reply:
            del reply["at"]
            if result["ok"]:
                result = result.get("result")
                self._answer(True, result.get("after_reboot") if isinstance(result, dict)
                             else None)
            else:
                self._answer(False, result.get("error"))
        self._record()

    def finish(self):
        # The batch's reply, recorded to be sent. Should it not fit its room after all (_used
        # is counted as it grows), details go, last first: a reply that never fits would
        # never go.
        reply = self.reply
        entries = reply.get("r") or []
        i = len(entries)
        while i and len(_compact(reply)) + _BARE > self.room:  # ,"dup":true
            i -= 1
            entries[i] = entries[i][:2]
        return self.commands.finish(reply)

    def _record(self):
        self.commands._remember([self.reply["id"], None, self.reply, 0])

    def _answer(self, ok, detail):
        # The next command's answer: nothing more than the count for a plain success; a
        # detail only while the reply has room for it and a bare answer for each command
        # still to come.
        reply = self.reply
        index = reply["n"]
        reply["n"] = index + 1
        if ok and not detail:
            return
        more = 0 if "r" in reply else 7  # ,"r":[]
        entry = [index, ok, detail]
        size = len(_compact(entry)) + 1
        left = max(0, self._expected - index - 1) * _BARE
        if self._used + more + size + left + _RESERVE > self.room:
            entry = [index, ok]
            size = len(_compact(entry)) + 1
        reply.setdefault("r", []).append(entry)
        self._used += more + size

    def _stop(self, why):
        self.reply["ok"] = False
        self.reply["error"] = why
        return -1
