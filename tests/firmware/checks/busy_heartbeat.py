# The whole application (app.main) with a stand-in for what its heartbeat asks before it reads
# the heap (App.busy: on a provisioned device, whether the uplink has a message under way),
# for tests/firmware/test_heap_health.py.
import app.main as m


def start(busy_asks):
    """Runs the application, busy for the first `busy_asks` asks of each heartbeat (always,
    when negative)."""
    init = m.App.__init__

    def with_busy(self, update=None):
        init(self, update)
        asks = [0]

        def busy():
            asks[0] += 1
            if busy_asks < 0 or asks[0] <= busy_asks:
                return True
            asks[0] = 0
            return False

        self.busy = busy

    m.App.__init__ = with_busy
    m.start()
