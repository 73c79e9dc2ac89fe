# What the application's counters hold after a run (tests/sim/test_sensors_usage.py): the
# totals, and every event but the uses, read back as the next boot opens them.
from app import counter

PAGE = 20


def show():
    c = counter.Counters([])
    print("STATE", c.snapshot())
    out, seq = [], 0
    while seq < c.last_seq:
        page = c.events_after(seq, PAGE)
        out += [e[2:] for e in page if e[2] != "use"]
        seq = page[-1][0]
    print("EVENTS", out)
