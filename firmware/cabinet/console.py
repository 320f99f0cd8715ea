"""Non-blocking reads from the console (stdin), shared by every board's HAL.

The command channel polls it once per cycle, so it must never block and,
after construction, never allocate."""
import select
import sys


class ConsoleIn:
    def __init__(self):
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        # Bytes, not text: the binary stream where the port has one.
        self._readinto = getattr(sys.stdin, 'buffer', sys.stdin).readinto
        self._one = bytearray(1)
        self._ready()                     # first ipoll allocates its result tuple

    def readinto(self, buf):
        """Bytes waiting, without blocking: 0 if none. One byte per readinto:
        a larger read would wait for the whole buffer."""
        n = 0
        one = self._one
        while n < len(buf) and self._ready():
            if not self._readinto(one):
                break                     # end of input
            buf[n] = one[0]
            n += 1
        return n

    def _ready(self):
        for _ in self._poll.ipoll(0):
            return True
        return False
