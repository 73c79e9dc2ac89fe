# Why a boot of the virtual device ends. Each is raised where it happens (a reset, a power
# cut, the span's end) and carried to the boot script, which reports it to the host runner.
# Shared by the chip's modules, the flash and the coupling to the models.

# Exit reasons, shared with the host runner (musket_sim.device).
EXIT_SPAN_END = "span_end"
EXIT_RESET = "reset"
EXIT_SOFT_RESET = "soft_reset"
EXIT_POWER_CUT = "power_cut"
EXIT_DEEPSLEEP = "deepsleep"
EXIT_WDT = "wdt"
EXIT_SIM_FAILURE = "sim_failure"


class SimExit(SystemExit):
    # Ends the device process. Not an Exception, so that firmware `except Exception` blocks,
    # which a real power cut or reset would not respect either, cannot swallow it; a
    # SystemExit, so that CPython's asyncio lets it out of a task as MicroPython's does.
    reason = ""

    def __init__(self, detail=None):
        super().__init__(self.reason)
        self.detail = detail


class SpanEnd(SimExit):
    reason = EXIT_SPAN_END


class Reset(SimExit):
    reason = EXIT_RESET


class SoftReset(SimExit):
    reason = EXIT_SOFT_RESET


class PowerCut(SimExit):
    reason = EXIT_POWER_CUT


class DeepSleep(SimExit):
    reason = EXIT_DEEPSLEEP


class WatchdogReset(SimExit):
    reason = EXIT_WDT


class HostGone(SimExit):
    reason = "host_gone"


class SimFailure(SimExit):
    # The simulator itself failed (a model on the host, or the sim's own code on the device):
    # the run stops and says so; the device did not reset.
    reason = EXIT_SIM_FAILURE
