# One TCP connection on the modem's own TCP stack, as the links above (MQTT, TLS) use a byte
# stream: write(data), read_into(buf), close(), `closed`. It behaves like a socket: a failure
# is an OSError with an errno, never the AT layer's own exceptions:
#   ECONNRESET  the network closed it (bearer lost, modem restarted), or a write after the
#               remote end closed it (a read then gives 0, the end of the stream)
#   ETIMEDOUT   the modem did not answer a socket command in time
#   ENOTCONN    not open (never opened, or closed here)
#   EIO         the modem refused a command (the message carries its error code), or data
#               the modem pushed did not fit the receive buffer (the stream has a hole)
#
# The driver makes its sockets once, each with its receive buffer, and reuses them: opening a
# connection allocates nothing. The driver's URC handlers tell a socket of data (data()),
# pushed bytes (room() / pushed()) and closure (ended()); the socket reaches the modem only
# through the driver's send() / recv() / close_link(). Each open, send, receive and close is
# told to the driver's `datause` (app.datause.DataUse, when the application made one), which
# counts the bytes as the carrier bills them.
import asyncio
import errno

from app.modem.at import ATError, ATTimeout
from app.modem.replies import ModemError

_EOF = -1  # closed by the remote end: reads give what is left, then 0


class Socket:
    def __init__(self, modem, link, rx_size):
        self._modem = modem
        self.link = link
        self._rx = bytearray(rx_size)
        self._start = self._end = 0
        self._event = asyncio.Event()
        self._readable = False  # the modem may hold data for us (URC seen, not drained)
        self._err = errno.ENOTCONN  # 0 while open, else why not (see the top)
        self.held = False  # the link is ours until close() releases it

    @property
    def closed(self):
        return self._err != 0

    # -- the driver's side ------------------------------------------------------------------

    def opening(self):
        # Called before the open command: from now on URCs about the link count, so that a
        # closure announced between the open's reply and its return is not lost.
        self._start = self._end = 0
        self._readable = False
        self._event.clear()
        self._err = 0
        self.held = True

    def abandon(self):
        # The open failed: the link is free again.
        self.held = False
        self._err = errno.ENOTCONN

    def data(self):
        # The modem holds data for this link.
        self._readable = True
        self._event.set()

    def ended(self, why=_EOF):
        # The link is gone: closed by the remote end (_EOF), or lost with the network
        # (errno.ECONNRESET). A closure already known keeps its reason.
        if not self._err:
            self._err = why
            if why == _EOF and self._modem.datause is not None:
                self._modem.datause.closed()
        self._event.set()

    def room(self):
        # The free end of the receive buffer, for data the modem pushes (a memoryview).
        if self._start == self._end:
            self._start = self._end = 0
        elif self._start:
            mv = memoryview(self._rx)
            mv[:self._end - self._start] = mv[self._start:self._end]
            self._end -= self._start
            self._start = 0
        return memoryview(self._rx)[self._end:]

    def pushed(self, stored, sent):
        # `stored` of the `sent` bytes the modem pushed went into room(); the rest is lost.
        if self._modem.datause is not None:
            self._modem.datause.received(sent)
        self._end += stored
        if stored < sent:
            self.ended(errno.EIO)
        self._event.set()

    # -- the stream -------------------------------------------------------------------------

    def _error(self, e):
        # The OSError for an AT-level failure: the link's own closure if one came with it.
        if isinstance(e, ATTimeout):
            return OSError(errno.ETIMEDOUT, str(e))
        return OSError(self._err if self._err > 0 else errno.EIO, str(e))

    def _closed(self, what):
        # The OSError for a socket that is not open (errno and message both, as CPython
        # sets errno only from two arguments).
        if self._err == _EOF:
            return OSError(errno.ECONNRESET, what + ": closed by the remote end")
        if self._err == errno.ECONNRESET:
            return OSError(errno.ECONNRESET, what + ": lost with the network")
        if self._err == errno.ENOTCONN:
            return OSError(errno.ENOTCONN, what + ": not open")
        return OSError(self._err, what + ": data lost (receive buffer full)")

    async def write(self, data):
        mv = memoryview(data)
        step = self._modem.MAX_SEND
        i = 0
        while i < len(mv):
            if self._err:
                raise self._closed("send %d" % self.link)
            chunk = mv[i:i + step]
            try:
                await self._modem.send(self, chunk)
            except (ATError, ModemError) as e:
                raise self._error(e)
            if self._modem.datause is not None:
                self._modem.datause.sent(len(chunk))
            i += len(chunk)
        return i

    async def read_into(self, buf):
        # Waits for data; returns the bytes copied into buf, 0 once the remote end closed the
        # connection and nothing is left. Data goes modem -> this socket's buffer -> buf, so
        # small reads (a 2-byte MQTT header) cost no AT command each.
        while self._start == self._end:
            if self._readable and self._err in (0, _EOF):
                self._readable = False
                try:
                    n, more = await self._modem.recv(self, self._rx)
                except (ATError, ModemError) as e:
                    self._readable = True  # the data is still in the modem
                    raise self._error(e)
                self._readable = self._readable or more
                self._start = 0
                self._end = n
                if n and self._modem.datause is not None:
                    self._modem.datause.received(n)
            elif self._err == _EOF:
                return 0
            elif self._err:
                raise self._closed("read %d" % self.link)
            else:
                self._event.clear()
                await self._event.wait()
        n = min(len(buf), self._end - self._start)
        buf[:n] = memoryview(self._rx)[self._start:self._start + n]
        self._start += n
        return n

    async def close(self):
        # Gives the link back to the modem; closing twice is no error.
        if not self.held:
            return
        self.held = False
        was_open = not self._err
        if was_open and self._modem.datause is not None:
            self._modem.datause.closed()
        self._err = errno.ENOTCONN
        self._start = self._end = 0
        self._event.set()
        try:
            await self._modem.close_link(self, was_open)
        except (ATError, ModemError) as e:
            raise OSError(errno.ETIMEDOUT if isinstance(e, ATTimeout) else errno.EIO, str(e))
