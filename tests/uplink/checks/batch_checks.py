# Batches of commands (a message of commands a line each, after {"id", "op": "batch"}) through
# the uplink over the fake transport of uplink_checks, on a virtual device under both
# interpreters: each command checked, run once and answered in the batch's one reply; a batch
# larger than the receive buffer read a line at a time; a batch sent again answered from the
# record; one cut mid-way going on after the commands it answered; refusals.
import json

from app import parts, store
from app.uplink.batch import BATCH_BYTES, BATCH_MAX, Batch
from app.uplink.commands import Commands
from uplink_checks import (
    Broker,
    Device,
    FakeCounters,
    clean,
    counter_cmd,
    publish,
    record,
    run_until,
)


def batch(bid, lines, n=None):
    # As musket.batches packs one: the first line says how many commands follow.
    head = b'{"id":"%s","op":"batch","n":%d}' % (bid.encode(), len(lines) if n is None else n)
    return b"\n".join([head] + list(lines))


def replies_to(broker, cid):
    return [r for _, _, r in broker.replies() if r.get("id") == cid]


async def check_a_batch_runs_each_command_once_and_answers_once():
    clean()
    counters = FakeCounters()
    lines = [counter_cmd("k1", 4), b"not json {", b'{"id":"k2","op":"status"}',
             b'{"id":"k3","op":"config","set":{"report_interval_s":5}}',
             counter_cmd("k4", 6)]
    message = batch("B1", lines)
    first = Broker([publish("d/dev-a/c", message, 1)])
    again = Broker([publish("d/dev-a/c", message, 2)])  # the sender's copy, a new message
    uplink = Device(counters, [first, again]).uplink
    await run_until(uplink, lambda: first.closed or len(first.replies()) == 1)
    (reply,) = [r for _, _, r in first.replies()]
    await run_until(uplink, lambda: len(again.replies()) == 1)
    want = {"id": "B1", "ok": True, "n": 5, "r": [
        [1, False, "malformed: not JSON"],
        [2, False, "op status cannot be batched: send it alone"],
        [3, False, "report_interval_s: value 5 is below the minimum 60"]]}
    repeat = dict(want)
    repeat["dup"] = True
    (second,) = [r for _, _, r in again.replies()]
    ok = (len(message) < 320 and reply == want and second == repeat
          and counters.adjusts == [("brews", 4, "fix", "cmd:k1"), ("brews", 6, "fix", "cmd:k4")]
          and [e[0] for e in record()] == ["B1"])
    if not ok:
        print("batch", reply, second, counters.adjusts, record())
    return ok


async def check_a_batch_larger_than_the_receive_buffer_is_read_a_line_at_a_time():
    # 14 counter commands (1,100 bytes) in one message, then a command alone: the batch is
    # read from the stream a buffer at a time, and the stream stays in step for the next one.
    clean()
    counters = FakeCounters()
    lines = [counter_cmd("m%d" % i, i) for i in range(14)]
    message = batch("B2", lines)
    broker = Broker([publish("d/dev-a/c", message, 1),
                     publish("d/dev-a/c", counter_cmd("alone", 99), 2)])
    uplink = Device(counters, [broker]).uplink
    await run_until(uplink, lambda: len(broker.replies()) == 2)
    replies = [r for _, _, r in broker.replies()]
    ok = (320 < len(message) <= BATCH_BYTES
          and replies == [{"id": "B2", "ok": True, "n": 14},
                          {"id": "alone", "ok": True, "result": {"seq": 15}}]
          and [a[1] for a in counters.adjusts] == list(range(14)) + [99]
          and sorted(broker.pubacks()) == [1, 2])
    if not ok:
        print("large batch", len(message), replies, counters.adjusts, broker.pubacks())
    return ok


async def check_a_batch_cut_mid_way_goes_on_after_the_commands_answered():
    # The power goes while the batch's third command runs: the record says so ("at"). The
    # broker delivers the batch again: the first two do not run again, the third is answered
    # "interrupted" and not run again, the rest run.
    clean()
    lines = [counter_cmd("p%d" % i, 10 + i) for i in range(5)]
    message = batch("B3", lines)
    cut = FakeCounters()
    Device(cut, [])  # registers the parts, as at boot
    commands = Commands("d/dev-a/c", parts["log"])
    steps = Batch(commands, 400)
    started = steps.start({"id": "B3", "op": "batch", "n": 5}, len(message))
    for index in range(2):
        steps.take_line(index, lines[index])
        steps.ran_line(commands.run())
    running = steps.take_line(2, lines[2])
    commands.run()  # the cut comes before its result is recorded
    counters = FakeCounters()
    broker = Broker([publish("d/dev-a/c", message, 7, dup=True)])
    uplink = Device(counters, [broker]).uplink
    await run_until(uplink, lambda: len(broker.replies()) == 1)
    replies = [r for _, _, r in broker.replies()]
    want = {"id": "B3", "ok": True, "n": 5,
            "r": [[2, False, "interrupted before it finished; not run again"]]}
    ok = (started is None and running == 1 and replies == [want]
          and [a[1] for a in cut.adjusts] == [10, 11, 12]
          and [a[1] for a in counters.adjusts] == [13, 14])
    if not ok:
        print("cut batch", replies, cut.adjusts, counters.adjusts, record())
    return ok


async def check_batches_beyond_the_limits_are_refused():
    clean()
    counters = FakeCounters()
    too_large = batch("B4", [counter_cmd("t%d" % i, i) for i in range(18)])
    too_many = batch("B5", [b'{"id":"u%d","op":"nope"}' % i for i in range(BATCH_MAX + 2)],
                     BATCH_MAX)
    long_line = batch("B6", [counter_cmd("v1", 1), b'{"id":"v2","op":"config","set":{"x":"'
                             + b"y" * 400 + b'"}}', counter_cmd("v3", 3)])
    broker = Broker([publish("d/dev-a/c", too_large, 1), publish("d/dev-a/c", too_many, 2),
                     publish("d/dev-a/c", long_line, 3)])
    app = Device(counters, [broker])
    await run_until(app.uplink, lambda: len(broker.replies()) == 3)
    if len(broker.replies()) != 3:
        print("limits", broker.replies(), app.logged(""))
        return False
    b4, b5, b6 = [r for _, _, r in broker.replies()]
    entries = b5.get("r", [])
    ok = (len(too_large) > BATCH_BYTES
          and b4 == {"id": "B4", "ok": False,
                     "error": "too large: %d bytes (a batch takes at most %d)"
                              % (len(too_large), BATCH_BYTES)}
          and b5.get("ok") is False and b5.get("error") == "more than %d commands" % BATCH_MAX
          and b5.get("n") == BATCH_MAX and [e[0] for e in entries] == list(range(BATCH_MAX))
          # 24 refusals leave no room for their reasons: each is a bare answer.
          and all(e[1:] == [False] for e in entries)
          and len(json.dumps(b5)) < 428
          and b6 == {"id": "B6", "ok": True, "n": 3,
                     "r": [[1, False, "too large: longer than a command may be"]]}
          and [a[1] for a in counters.adjusts] == [1, 3])
    if not ok:
        print("limits", b4, b5, b6, counters.adjusts)
    return ok


async def check_a_batch_step_whose_write_fails_for_memory_is_tried_again_once():
    # Every other write of the command record fails for memory: each batch step is tried
    # again (paced), and no command runs or is answered twice.
    clean()
    counters = FakeCounters()
    lines = [counter_cmd("w1", 1), b'{"id":"w2","op":"config","set":{"report_interval_s":5}}',
             counter_cmd("w3", 3)]
    broker = Broker([publish("d/dev-a/c", batch("B7", lines), 1)])
    uplink = Device(counters, [broker]).uplink
    write = store.write_json
    calls = []

    def write_half_the_time(path, obj):
        calls.append(path)
        if path == "/uplink.cmd" and len(calls) % 2:
            raise MemoryError("memory allocation failed, allocating 304 bytes")
        write(path, obj)

    store.write_json = write_half_the_time
    try:
        await run_until(uplink, lambda: len(broker.replies()) == 1)
    finally:
        store.write_json = write
    replies = [r for _, _, r in broker.replies()]
    want = {"id": "B7", "ok": True, "n": 3,
            "r": [[1, False, "report_interval_s: value 5 is below the minimum 60"]]}
    ok = (replies == [want] and [a[1] for a in counters.adjusts] == [1, 3]
          and record()[-1][2] == want and len(calls) > 6)
    if not ok:
        print("retried", replies, counters.adjusts, record(), len(calls))
    return ok
