"""
A pseudo-terminal standing in for a USB serial adapter, with unplug and re-plug.

The emulator holds the master end; the driver opens ``path``, a symlink to the slave end
that plays the part of /dev/ttyUSB0. ``unplug()`` closes the pty (the driver's next read
or write fails as on a pulled cable: pyserial raises SerialException) and removes the
symlink (so reopening fails like a missing device); ``replug()`` makes a fresh pty behind
the same path, as udev does when the adapter comes back.
"""

from __future__ import annotations

import os
import pty
import select
import tempfile
import threading
import tty


class PtyLink:
    """Master side of an emulated serial port reachable at a stable path.

    Args:
        path: where the port appears (a symlink); default: a fresh name in a temp dir.
        drop_when_full: make ``write()`` drop what does not fit in the pty buffer (~17 kB)
            instead of blocking, as a USB-serial adapter loses bytes its host does not read;
            for emulators that stream on their own (telemetry).
    """

    def __init__(self, path: str | None = None, drop_when_full: bool = False):
        self.drop_when_full = drop_when_full
        if path is None:
            path = os.path.join(tempfile.mkdtemp(prefix='dexmpc-pty-'), 'ttyEMU0')
        self.path = path
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self.replug()

    @property
    def plugged(self) -> bool:
        """True while the port exists."""
        return self._master is not None

    def replug(self) -> None:
        """(Re)create the pty behind ``path``; a no-op while plugged."""
        with self._lock:
            if self._master is not None:
                return
            master, slave = pty.openpty()
            tty.setraw(slave)
            tty.setraw(master)
            if self.drop_when_full:
                os.set_blocking(master, False)
            # Keep our own slave fd open: reading the master then blocks instead of
            # failing with EIO while no client has the port open.
            self._master, self._slave = master, slave
            tmp = f'{self.path}.{os.getpid()}.tmp'
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, self.path)

    def unplug(self) -> None:
        """Pull the cable: remove the path and close the pty; a no-op while unplugged."""
        with self._lock:
            if self._master is None:
                return
            if os.path.lexists(self.path):
                os.unlink(self.path)
            for fd in (self._master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._master = self._slave = None

    close = unplug

    def read(self, max_bytes: int = 4096, timeout: float = 0.05) -> bytes:
        """Bytes the driver wrote, waiting at most ``timeout`` s; b'' when none or unplugged."""
        fd = self._master
        if fd is None:
            return b''
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b''
            return os.read(fd, max_bytes)
        except (OSError, ValueError):   # closed by unplug() in another thread
            return b''

    def write(self, data: bytes) -> None:
        """Send bytes to the driver; dropped while unplugged or (drop_when_full) on a full pty."""
        fd = self._master
        if fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass

    def flush_input(self) -> None:
        """Discard whatever the driver wrote and the emulator has not read yet."""
        while self.read(timeout=0.0):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.unplug()
