"""The RS-485 bus of the software-in-the-loop rig: a pty pair.

The firmware opens the pty's slave path (as it would open a UART); the plant
serves Modbus on the master side through PtyPort, which offers the small part
of pyserial's interface that umodbus's RTU server uses. On real hardware the
plant takes a pyserial port instead and nothing else changes.
"""
import os
import select
import time
import tty


class PtyPort:
    def __init__(self, baudrate=115200):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)           # no echo, no CR/LF translation, 8-bit clean
        self.path = os.ttyname(self._slave)
        self.baudrate = baudrate
        self.timeout = 0.001              # wait for a first byte (umodbus sets it)
        self.inter_byte_timeout = 0.00075 # end of frame: 1.5 characters above 19,200 baud
        self.bytes_in = 0
        self.bytes_out = 0

    def read(self, size=256):
        """Return one frame: bytes until a silent gap, or b'' after the timeout."""
        out = bytearray()
        wait = self.timeout
        while len(out) < size:
            r, _, _ = select.select([self.master], [], [], wait)
            if not r:
                break
            try:
                chunk = os.read(self.master, size - len(out))
            except OSError:               # no process has the slave open right now
                time.sleep(0.01)
                break
            out += chunk
            wait = self.inter_byte_timeout
        self.bytes_in += len(out)
        return bytes(out)

    def write(self, data):
        self.bytes_out += len(data)
        return os.write(self.master, data)

    def close(self):
        os.close(self.master)
        os.close(self._slave)
