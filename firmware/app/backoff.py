# Retry pacing shared by every part that reconnects (the modem's link, the broker session):
# the wait doubles from a minimum up to a cap, and carries +-25 % jitter so that a fleet that
# lost the same cell or the same broker at once does not come back in step.
import random

JITTER_PERCENT = 25
_DOUBLINGS_MAX = 10  # 5 s doubled 10 times is past any cap in use


def delay_s(failures, min_s, max_s):
    # Seconds to wait after `failures` failures in a row (1 for the first).
    delay = min(max_s, min_s << min(max(failures, 1) - 1, _DOUBLINGS_MAX))
    jitter = delay * JITTER_PERCENT // 100
    return delay + (random.randint(-jitter, jitter) if jitter else 0)
