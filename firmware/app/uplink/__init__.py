# The uplink: an MQTT 3.1.1 client over the modem's byte stream (mqtt.py), compact telemetry
# (codec.py), the readings' store-and-forward queue on flash (queue.py), downlink commands
# (commands.py) and the task that ties them to the usage counter's journal (service.py).
# Modules are imported where needed, so a device without a broker configured pays for none.
from app.errors import FirmwareError


class UplinkError(FirmwareError):
    # Root of the uplink's errors; `code` is the MQTT return code or reason, when there is one.
    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def topic(device_id, leaf):
    # The topic scheme: every topic of a device lives under "d/<device_id>/" (see docs/uplink.md).
    return "d/%s/%s" % (device_id, leaf)
