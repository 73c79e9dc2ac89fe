# Store updates and reads for the power-cut tests (tests/firmware/test_power_cut_store.py): the
# test cuts power at each flash write of an update, then reads back what the next boot finds.
from app import store

RECORD = "value.rec"
JOURNAL = "events.log"
JOURNAL_BYTES = 4096


def write_record(value):
    store.write_record(RECORD, value)
    print("WROTE")


def read_record(old, new):
    """Prints "VALUE old" or "VALUE new" (anything else: its repr), or "ERROR <why>"."""
    try:
        value = store.read_record(RECORD)
        print("VALUE", "old" if value == old else "new" if value == new else repr(value))
    except store.StoreError as e:
        print("ERROR", e)


def append_three():
    j = store.Journal(JOURNAL, JOURNAL_BYTES)
    for _ in range(3):
        j.append(b"event-%d" % (j.last_seq + 1))
    print("APPENDED", j.last_seq)


def list_events():
    j = store.Journal(JOURNAL, JOURNAL_BYTES)
    print("EVENTS", [p.decode() for _, p in j.records()])
