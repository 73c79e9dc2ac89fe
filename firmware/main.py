# The application: everything lives in the `app` package so that it is compiled to .mpy.
# First the update's boot stage (otaboot.py): it may install an update, swap images or roll
# one back, and reset; what it loaded is let go before the application takes the heap.
import gc
import sys

# A collection after every 4 KB allocated, not only when the heap runs out: what stays alive
# (a task's frame, a queued reading) is then placed low in the heap, among the holes the last
# collection freed, instead of wherever the allocations had reached, and the free heap stays
# in one large block rather than hundreds of small ones (docs/firmware.md, Heap).
gc.threshold(4096)

import otaboot  # noqa: E402

update = otaboot.run()
del otaboot
sys.modules.pop("otaboot", None)
sys.modules.pop("otastate", None)  # the application loads it again when it needs it

import app.main  # noqa: E402

app.main.start(update)
