# The firmware's `network` on the virtual device. The boards in musket reach the internet
# through an LTE modem; WLAN exists but never finds an access point, and PPP is the seam for a
# modem data link over a UART stream.
STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_GOT_IP = 1010


class _Interface:
    # What every interface of the virtual board shares: it can be switched on and off, and it
    # never has an address of its own.
    _NO_ADDRESS = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def __init__(self):
        self._active = False

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        return None

    def isconnected(self):
        return False

    def ifconfig(self, configtuple=None):
        return self._NO_ADDRESS


class WLAN(_Interface):
    def __init__(self, interface_id=STA_IF):
        super().__init__()

    def connect(self, ssid=None, key=None, **kwargs):
        pass

    def disconnect(self):
        pass

    def status(self, param=None):
        return STAT_IDLE

    def scan(self):
        return []


class PPP(_Interface):
    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def connect(self, security=0, user=None, key=None):
        raise OSError(95)  # EOPNOTSUPP: the modem model carries data over its socket commands
