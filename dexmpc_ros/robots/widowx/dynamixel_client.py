"""
Protocol 2.0 transactions over ``dynamixel_sdk`` with bounded retries and typed errors.

Every SDK call goes through :class:`DynamixelClient`, which turns what can go wrong on a
Dynamixel bus into the drivers' error types:

* no reply, bad CRC, partial packet (COMM_RX_TIMEOUT / COMM_RX_CORRUPT, or a servo that
  reports a CRC error): retried ``retries`` times, then :class:`DeviceNotAnsweringError`.
  A sync read keeps the replies it got, retries only the servos still missing (within an
  optional deadline), then raises :class:`BusSilentError` when no servo answered at all
  and :class:`SyncReadIncompleteError` (with the others' replies) when some did;
* a servo refusing an instruction (access, range, limit errors): :class:`DriverError`;
* the Alert bit of a status packet (a hardware error): handed to ``on_alert``;
* the port vanishing (pyserial/termios errors on a pulled cable): the client closes and
  raises :class:`PortMissingError`, never a bare SerialException.
"""

from __future__ import annotations

import math
import select
import termios
import time
from typing import Callable, Mapping

import serial
from dynamixel_sdk import (COMM_RX_CORRUPT, COMM_RX_TIMEOUT, COMM_SUCCESS, GroupSyncWrite,
                           PacketHandler, PortHandler)
from dynamixel_sdk.protocol2_packet_handler import PKT_ERROR, PKT_ID, PKT_PARAMETER0

from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.robots.driver import (BusSilentError, DeviceNotAnsweringError, DriverError,
                                      PartialReadError, PortMissingError, PortPermissionError)

_IO_ERRORS = (serial.SerialException, OSError, termios.error)
_X = dxl.X_SERIES
#: a retry needs at least this much of the deadline left [ms]
MIN_RETRY_MS = 2.0
HINT_ONE_SERVO = ('the other servos answered, so the bus and its supply work: check the '
                  'cables into and out of the named servos and their LEDs (blinking = '
                  'hardware error)')


class SyncReadIncompleteError(PartialReadError):
    """Some servos did not answer a sync read; ``replies`` holds the others' {id: data}."""

    def __init__(self, message: str, hint: str, silent: tuple[str, ...],
                 missing: list[int], replies: dict[int, bytes]):
        super().__init__(message, hint, silent)
        self.missing, self.replies = list(missing), dict(replies)


class DynamixelClient:
    """
    One open bus: ping, register read/write, reboot, sync read and sync write.

    Args:
        port: serial device path.
        baudrate: bus speed [bit/s].
        names: servo name per ID, for messages.
        hint: how to fix a bus that does not answer (ends DeviceNotAnsweringError).
        retries: extra attempts after a failed transaction.
        retry_pause_ms: pause before a retry, so a late reply drains [ms].
        sync_read_timeout_ms: reply budget of one sync read, all servos [ms].
        on_alert: called with the IDs whose status packet had the Alert bit set.
    """

    def __init__(self, port: str, baudrate: int, names: Mapping[int, str], hint: str,
                 retries: int = 2, retry_pause_ms: float = 1.0,
                 sync_read_timeout_ms: float = 34.0,
                 on_alert: Callable[[list[int]], None] | None = None):
        self.port_name, self.baudrate, self.names, self.hint = port, baudrate, names, hint
        self.retries, self.retry_pause_ms = retries, retry_pause_ms
        self.sync_read_timeout_ms = sync_read_timeout_ms
        self.on_alert = on_alert
        self.packet = PacketHandler(2.0)
        self._port: PortHandler | None = None

    @property
    def is_open(self) -> bool:
        """True while the port is open (False after close() or a lost port)."""
        return self._port is not None

    def open(self) -> None:
        """Open the port at ``baudrate``; PortPermissionError/PortMissingError if it fails."""
        self.close()
        port = PortHandler(self.port_name)
        try:
            opened = port.openPort() and port.setBaudRate(self.baudrate)
        except serial.SerialException as exc:
            raise PortPermissionError(f'cannot open {self.port_name}: {exc}',
                                      self.hint) from exc
        if not opened:
            raise PortMissingError(f'cannot open {self.port_name} at {self.baudrate} bit/s',
                                   self.hint)
        self._port = port

    def close(self) -> None:
        """Close the port; idempotent."""
        port, self._port = self._port, None
        if port is not None and port.is_open:
            try:
                port.closePort()
            except _IO_ERRORS:
                pass

    # Single-servo transactions ---------------------------------------------------------
    def ping(self, dxl_id: int, check_alert: bool = True) -> int:
        """Model number of servo ``dxl_id``."""
        return self._txrx('ping', dxl_id, self.packet.ping, check_alert=check_alert)

    def read(self, dxl_id: int, name: str, check_alert: bool = True) -> int:
        """Register ``name`` (``dxl.X_SERIES``) of one servo, signed where it is."""
        item = _X[name]
        fn = {1: self.packet.read1ByteTxRx, 2: self.packet.read2ByteTxRx,
              4: self.packet.read4ByteTxRx}[item.size]
        value = self._txrx(f'a read of {name}', dxl_id, fn, item.address,
                           check_alert=check_alert)
        return dxl.to_signed(value, item.size) if item.signed else value

    def write(self, dxl_id: int, name: str, value: int, check_alert: bool = True) -> None:
        """Write register ``name`` of one servo and wait for its status.

        ``check_alert=False`` skips ``on_alert`` (e.g. while clearing a fault).
        """
        item = _X[name]
        fn = {1: self.packet.write1ByteTxRx, 2: self.packet.write2ByteTxRx,
              4: self.packet.write4ByteTxRx}[item.size]
        self._txrx(f'a write of {name}={value}', dxl_id, fn, item.address,
                   value & ((1 << 8 * item.size) - 1), check_alert=check_alert)

    def reboot(self, dxl_id: int) -> None:
        """Send REBOOT (the servo answers, then restarts and is deaf for a moment)."""
        self._txrx('reboot', dxl_id, self.packet.reboot, check_alert=False)

    # Group transactions ----------------------------------------------------------------
    def sync_read(self, address: int, length: int, ids: list[int],
                  check_alert: bool = True, deadline: float | None = None
                  ) -> dict[int, bytes]:
        """
        ``length`` bytes at ``address`` of every servo in ``ids``: {id: data}.

        Each attempt waits up to ``sync_read_timeout_ms`` for the replies; a retry asks only
        the servos still missing and is made only while ``deadline`` (time.monotonic()
        seconds; None = no deadline) leaves ``MIN_RETRY_MS``, its reply timeout cut to
        what is left. Servos whose status had the Alert bit go to ``on_alert`` once all
        answered, unless ``check_alert`` is False (reading Hardware Error Status to clear
        it).

        Uses the SDK's syncReadTx + rxPacket rather than GroupSyncRead, which drops each
        status packet's ERR byte (and with it the Alert bit), and rather than readRx, which
        discards the replies after a missing one while it waits for it.

        Raises:
            BusSilentError: no servo answered any attempt (supply, cable, baud rate).
            SyncReadIncompleteError: some servos answered, the others (named) did not.
        """
        port = self._require_port()
        replies: dict[int, bytes] = {}
        alerts: list[int] = []
        why = dict.fromkeys(ids, 'no reply')
        tries = 0
        for attempt in range(self.retries + 1):
            missing = [i for i in ids if i not in replies]
            if not missing:
                break
            timeout_ms = self.sync_read_timeout_ms
            if attempt:
                left_ms = math.inf if deadline is None else \
                    (deadline - time.monotonic()) * 1000 - self.retry_pause_ms
                if left_ms < MIN_RETRY_MS:
                    break
                timeout_ms = min(timeout_ms, left_ms)
                time.sleep(self.retry_pause_ms / 1000)
                self._io(port.ser.reset_input_buffer)    # late replies to the last attempt
            tries += 1
            result = self._io(self.packet.syncReadTx, port, address, length, missing,
                              len(missing), False)
            if result != COMM_SUCCESS:
                why.update(dict.fromkeys(missing, describe_result(result)))
                continue
            self._receive(port, missing, length, timeout_ms, replies, alerts, why)
        missing = [i for i in ids if i not in replies]
        if not missing:
            if alerts and check_alert and self.on_alert is not None:
                self.on_alert(alerts)
            return replies
        if not replies:
            raise BusSilentError(
                f'no servo answered a sync read on {self.port_name} ({len(ids)} asked, '
                f'{tries} {"try" if tries == 1 else "tries"}, {why[ids[0]]}): the bus is '
                f'silent, not one servo', self.hint)
        silent = tuple(f'servo {i} ({self.names.get(i, "?")})' for i in missing)
        raise SyncReadIncompleteError(
            f'{", ".join(silent)} gave no valid reply to a sync read after {tries} '
            f'{"try" if tries == 1 else "tries"} ({why[missing[0]]})', HINT_ONE_SERVO, silent,
            missing, replies)

    def _receive(self, port: PortHandler, wanted: list[int], length: int, timeout_ms: float,
                 replies: dict[int, bytes], alerts: list[int], why: dict[int, str]) -> None:
        """
        Status packets of one sync read into ``replies`` until each servo in ``wanted``
        gave a reply (a bad one ends the wait for it: the retry asks it again) or time is up.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        port.setPacketTimeoutMillis(timeout_ms)
        pending = set(wanted)
        try:
            while pending:
                # Wait for the first byte here (the SDK's receive loop busy-waits); past the
                # deadline still take what is already buffered (this process may have been
                # descheduled while the replies came in).
                left = max(0.0, deadline - time.monotonic())
                if not self._io(select.select, [port.ser], [], [], left)[0]:
                    return
                rx, result = self._io(self.packet.rxPacket, port, False)
                if result == COMM_RX_TIMEOUT:
                    return
                dxl_id = rx[PKT_ID] if len(rx) > PKT_ERROR else None
                if dxl_id not in pending:
                    continue                      # a stray, repeated or headless reply
                pending.discard(dxl_id)
                data = bytes(rx[PKT_PARAMETER0 + 1:PKT_PARAMETER0 + 1 + length])
                error = rx[PKT_ERROR]
                if result != COMM_SUCCESS or error & 0x7F or len(data) != length:
                    why[dxl_id] = describe_result(result) if result != COMM_SUCCESS else \
                        dxl.decode_status_error(error).name or 'short reply'
                    continue
                replies[dxl_id] = data
                if error & dxl.STATUS_ALERT:
                    alerts.append(dxl_id)
        finally:
            port.is_using = False                 # the SDK's rxPacket would have reset it

    def sync_write(self, name: str, values: Mapping[int, int]) -> None:
        """Write register ``name`` of several servos in one packet (no replies)."""
        item = _X[name]
        writer = GroupSyncWrite(self._require_port(), self.packet, item.address, item.size)
        for dxl_id, value in values.items():
            writer.addParam(dxl_id, list(dxl.to_bytes(int(value), item.size)))
        result = self._io(writer.txPacket)
        if result != COMM_SUCCESS:
            raise DeviceNotAnsweringError(f'sync write of {name} on {self.port_name} failed '
                                          f'({describe_result(result)})', self.hint)

    # Plumbing --------------------------------------------------------------------------
    def _require_port(self) -> PortHandler:
        if self._port is None:
            raise PortMissingError(f'the Dynamixel bus on {self.port_name} is closed',
                                   'call connect()')
        return self._port

    def _io(self, fn, *args):
        """Call the SDK; a vanished port becomes PortMissingError (and closes the client)."""
        try:
            return fn(*args)
        except _IO_ERRORS as exc:
            self.close()
            raise PortMissingError(f'lost the Dynamixel bus on {self.port_name} ({exc})',
                                   'check the U2D2 cable, then connect() again') from exc

    def _txrx(self, what: str, dxl_id: int, fn, *args, check_alert: bool = True):
        """One request/reply with retries; returns the SDK's value (None for writes)."""
        outcome = ''
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_pause_ms / 1000)
            out = self._io(fn, self._require_port(), dxl_id, *args)
            *value, result, error = out
            if result != COMM_SUCCESS:
                outcome = describe_result(result)
                continue
            status = dxl.decode_status_error(error)
            if status.code == 3:             # the servo saw a CRC error: resend
                outcome = 'CRC error reported by the servo'
                continue
            if status.code:
                raise DriverError(f'servo {dxl_id} ({self.names.get(dxl_id, "?")}) refused '
                                  f'{what}: {status.name}', 'check the driver configuration')
            if status.alert and check_alert and self.on_alert is not None:
                self.on_alert([dxl_id])
            return value[0] if value else None
        raise DeviceNotAnsweringError(
            f'servo {dxl_id} ({self.names.get(dxl_id, "?")}) gave no valid reply to {what} '
            f'after {self.retries + 1} tries ({outcome})', self.hint)


def describe_result(result: int) -> str:
    """A dynamixel_sdk result code in words."""
    if result == COMM_RX_TIMEOUT:
        return 'no reply'
    if result == COMM_RX_CORRUPT:
        return 'corrupted reply: bad CRC or partial packet'
    return PacketHandler(2.0).getTxRxResult(result)
