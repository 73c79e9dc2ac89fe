"""Flash cost of the usage counter on the virtual flash under MicroPython.

Commits EVENTS usage events through app.counter on the device's littlefs (the uplink acking
every 10, as when online), counting the bytes programmed and blocks erased by the flash shim,
compaction included. Life = blocks x 100,000 erase cycles / (erases per event x 200 events a
day x 365), littlefs levelling wear over the whole filesystem partition (the OTA layout's,
the smallest); the byte-based figure (bytes written / block size) is used if it is worse.
"""

from musket_sim import VirtualDevice

EVENTS = 600
SCRIPT = """
import _simcore, _simflash
from app import counter
counts = [0, 0]
FP = _simflash.FlashPartition
prog, erase = FP._program, FP.erase
def _p(self, addr, data):
    counts[0] += len(data)
    prog(self, addr, data)
def _e(self, block):
    counts[1] += 1
    erase(self, block)
FP._program, FP.erase = _p, _e
c = counter.Counters(counter.parse_rules("brews/200:beans")[0])
t = _simcore._btime
worst = 0
start = t.ticks_us()
for i in range(%d):
    c.count("brews", 1)
    if i %% 10 == 9:
        c.acked(c.last_seq)
us = t.ticks_diff(t.ticks_us(), start)
print("RESULT", counts[0], counts[1], us)
""" % EVENTS


def main() -> None:
    device = VirtualDevice("esp32-sim7080g", interpreter="micropython", ota=True)
    device.create_flash()
    result = device.run(3600, script=SCRIPT)
    line = [ln for ln in result.script_output.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise SystemExit(f"no result: {result.script_output} {result.errors}")
    programmed, erased, us = (int(x) for x in line[0].split()[1:])
    fs = device.board.filesystem(True)
    blocks = fs.size // 4096
    per_event = programmed / EVENTS
    erases_per_event = max(erased / EVENTS, per_event / 4096)
    years = blocks * 100_000 / (erases_per_event * 200 * 365)
    print(f"FIGURE counter.flash_bytes_per_event {per_event:.0f} bytes")
    print(f"FIGURE counter.flash_erases_per_event {erased / EVENTS:.3f} blocks")
    print(f"FIGURE counter.flash_life_years {years:.1f} years")
    print(f"FIGURE counter.commit_ms {us / EVENTS / 1000:.2f} ms")


if __name__ == "__main__":
    main()
