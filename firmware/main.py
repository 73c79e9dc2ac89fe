# The application: everything lives in the `app` package so that it is compiled to .mpy.
# First the update's boot stage (otaboot.py): it may install an update, swap images or roll
# one back, and reset; what it loaded is let go before the application takes the heap.
# The application sets its collection threshold itself (app.main.start); the boot stage's
# allocations are all let go before then.
import sys

import otaboot

update = otaboot.run()
del otaboot
sys.modules.pop("otaboot", None)
sys.modules.pop("otastate", None)  # the application loads it again when it needs it

import app.main  # noqa: E402

app.main.start(update)
