"""Command batches: a sender's commands for one device, several to an MQTT message.

Each message to a device costs its own TCP segment, the device's reply another, and the
PUBACKs and ACKs of both: about 470 bytes over the air for a config change of 60. A batch
carries up to BATCH_MAX commands in one message of at most BATCH_BYTES, and the device
answers it once::

    {"id":"B62863b3073ab1b58","op":"batch","n":2}
    {"id":"c1","op":"config","set":{"report_interval_s":900}}
    {"id":"c2","op":"counter","name":"brews","value":0,"reason":"descaled"}

The device reads it a line at a time (firmware/app/uplink/batch.py), runs each command as it
would run it alone, in order, and answers ``{"id": <batch id>, "ok": true, "n": <commands
answered>, "r": [[index, ok, detail], ...]}``, where ``r`` lists only the commands that failed
(detail: why) or have more to say than success (detail: a config's ``after_reboot`` keys),
while the reply has room for details (``n`` in the first line tells the device how many
commands must still find room for their bare answers).
:func:`musket.messages.decode_replies` turns that into one reply per command.

The batch id derives from its commands' ids, so packing the same commands again makes the same
batch, which the device answers from its record instead of running it again. Status and OTA
commands go alone (their replies are too large to share one), as does a lone command.
"""

from __future__ import annotations

import hashlib
import json

from musket.broker import DEVICE_BATCH_BYTES, BrokerError, check_command_size

# firmware/app/uplink/batch.py's BATCHED, BATCH_MAX and BATCH_BYTES;
# tests/uplink/test_batches.py reads them from the firmware and fails when they differ.
BATCHED_OPS = ("config", "counter", "reboot")
BATCH_MAX = 24
BATCH_BYTES = DEVICE_BATCH_BYTES


def compact(command: dict) -> bytes:
    """A command's JSON as it goes on the air: no spaces."""
    return json.dumps(command, separators=(",", ":")).encode()


def batch_id(command_ids: list[str]) -> str:
    """The id of the batch of these commands, in this order (a valid command id)."""
    return "B" + hashlib.sha256("\n".join(command_ids).encode()).hexdigest()[:16]


def batch_payload(command_lines: list[bytes], command_ids: list[str]) -> bytes:
    head = compact({"id": batch_id(command_ids), "op": "batch", "n": len(command_ids)})
    return b"\n".join([head, *command_lines])


def pack(device_id: str, commands: list[dict]) -> list[tuple[bytes, list[str]]]:
    """The messages that carry `commands` (each a dict with "id" and "op") to `device_id`, in
    order: [(payload, [the command ids it carries]), ...]. Consecutive batchable commands
    share a message up to the batch limits. BrokerError when a command is larger than the
    device takes (as check_command_size)."""
    messages: list[tuple[bytes, list[str]]] = []
    lines: list[bytes] = []
    ids: list[str] = []

    def flush() -> None:
        if len(lines) == 1:
            messages.append((lines[0], list(ids)))
        elif lines:
            messages.append((batch_payload(lines, ids), list(ids)))
        lines.clear()
        ids.clear()

    for command in commands:
        line = check_command_size(device_id, compact(command))
        cid = command.get("id")
        if not isinstance(cid, str):
            raise BrokerError(f"command without a string id: {command!r}"[:200])
        if command.get("op") not in BATCHED_OPS:
            flush()
            messages.append((line, [cid]))
            continue
        if lines and (len(lines) == BATCH_MAX or len(batch_payload([*lines, line],
                                                                   [*ids, cid])) > BATCH_BYTES):
            flush()
        lines.append(line)
        ids.append(cid)
    flush()
    return messages


def commands_in(payload: bytes) -> list[dict]:
    """The commands a message carries: a batch's, or the one command. BrokerError when it is
    neither."""
    try:
        first, *rest = bytes(payload).split(b"\n")
        head = json.loads(first)
        if isinstance(head, dict) and head.get("op") == "batch":
            return [json.loads(line) for line in rest]
        return [json.loads(payload)]
    except (ValueError, UnicodeDecodeError) as e:
        raise BrokerError(f"command message: not JSON lines ({e})") from None
