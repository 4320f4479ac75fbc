"""
The one interface every hardware driver implements, and its typed errors.

A driver is a plain object below the ROS line (ARCHITECTURE.md §2; CONVENTIONS.md §6):

    with WidowXDriver(config) as arm:          # connect(): open, identify, check
        state = arm.read()                      # DriverState, SI units, twin joint names
        sent = arm.write(command)               # the command actually sent (clamped, mapped)

Lifecycle driver nodes map configure -> connect(), activate -> enable() (goal := present
position, then torque on), deactivate -> disable() (hold, torque off), cleanup ->
disconnect(). Every error a user can fix is a DriverError whose message ends with a hint
saying how ("check the U2D2 cable and permissions (dialout group)").
"""

from __future__ import annotations

import abc
import errno
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from dexmpc_ros.core.errors import DeviceError


class DriverError(DeviceError):
    """A device problem the user can act on; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = ''):
        self.message, self.hint = message, hint
        super().__init__(f'{message}: {hint}' if hint else message)


class NotConnectedError(DriverError):
    """read()/write() called before connect() or after disconnect()."""


class PortMissingError(DriverError):
    """The serial port does not exist (cable unplugged, wrong path)."""


class PortPermissionError(DriverError):
    """The serial port exists but this user may not open it."""


class DeviceNotAnsweringError(DriverError):
    """The port opened but the device did not answer within the retry budget."""


class BusSilentError(DeviceNotAnsweringError):
    """No device on a bus answered at all: its supply, cabling or baud rate, not one device."""


class PartialReadError(DeviceNotAnsweringError):
    """
    Some devices of a robot did not answer a read while the others did.

    Attributes:
        silent: the devices that did not answer, for messages ('servo 4 (elbow)').
        state: the reading of those that did, every joint listed, NaN where only a silent
            device measures it (its ``faults`` name the silent ones); None when the layer
            raising this cannot build one.
    """

    def __init__(self, message: str, hint: str = '', silent: tuple[str, ...] = (),
                 state: 'DriverState | None' = None):
        super().__init__(message, hint)
        self.silent, self.state = tuple(silent), state


class TorqueOffError(DriverError):
    """
    disable() could not confirm that every actuator let go.

    Attributes:
        still_powered: the actuators that may still hold torque ('servo 4 (elbow)').
    """

    def __init__(self, message: str, hint: str = '', still_powered: tuple[str, ...] = ()):
        super().__init__(message, hint)
        self.still_powered = tuple(still_powered)


class WrongDeviceError(DriverError):
    """A device answered but is not what the configuration expects (model number, ID)."""


class HardwareFaultError(DriverError):
    """The device reports a hardware fault (overload, overheating, voltage) and was stopped."""


#: ``DriverState.extra`` keys of an IMU reading: gyro [rad/s], then accelerometer [m/s^2].
IMU_KEYS = ('gyro_x', 'gyro_y', 'gyro_z', 'accel_x', 'accel_y', 'accel_z')


@dataclass(frozen=True)
class DriverState:
    """One reading of a robot, in SI units and the twin's joint names.

    Attributes:
        names: joint names, the robot spec's order (the twin's ``joint_states`` names).
        position: (n,) rad or m.
        velocity: (n,) rad/s or m/s.
        effort: (n,) N m or N; NaN where the device cannot measure it.
        stamp: time.monotonic() seconds when the reading completed.
        extra: further named readings (temperatures in degC, voltages in V, ...). A robot
            with an IMU puts ``gyro_{x,y,z}`` [rad/s] and ``accel_{x,y,z}`` [m/s^2] here,
            body frame (REP-103: x forward, y left, z up), see :meth:`imu`.
        faults: human-readable descriptions of active hardware faults; empty when healthy.
        self_clearing: the listed faults end by themselves once their cause goes away (a
            radio link that comes back), nothing to reset: a driver node holds while they
            last and resumes without ``~/recover``. False: latched, ``~/recover`` clears.
    """

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    stamp: float
    extra: Mapping[str, float] = field(default_factory=dict)
    faults: tuple[str, ...] = ()
    self_clearing: bool = False

    def imu(self) -> tuple[np.ndarray, np.ndarray] | None:
        """
        The IMU reading carried in ``extra``, if any.

        Returns:
            (angular velocity (3,) [rad/s], linear acceleration (3,) [m/s^2]) in the body
            frame, the acceleration a specific force (gravity included: +9.81 on z at rest,
            REP-145); None unless all of :data:`IMU_KEYS` are present.
        """
        if not all(key in self.extra for key in IMU_KEYS):
            return None
        values = np.array([self.extra[key] for key in IMU_KEYS], dtype=np.float64)
        return values[:3], values[3:]


class Driver(abc.ABC):
    """connect/disconnect (also as a context manager), read(), write() -> command sent."""

    #: a short name used in messages ("WidowX 250 on /dev/ttyUSB0").
    label: str = 'driver'

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the link, identify the device and check it; raises a DriverError."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Make the robot safe (as far as the device allows) and close the link; idempotent."""

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool:
        """True between a successful connect() and disconnect()."""

    @abc.abstractmethod
    def read(self) -> DriverState:
        """Read the robot's state; raises NotConnectedError before connect()."""

    @abc.abstractmethod
    def write(self, command: np.ndarray) -> np.ndarray:
        """Send one command (spec order, SI units); return the command actually sent."""

    def enable(self) -> None:
        """Start obeying commands (e.g. goal := present position, then torque on)."""

    def disable(self) -> None:
        """Stop obeying commands and hold or relax safely (e.g. torque off)."""

    def clear_faults(self) -> None:
        """Clear latched device faults where the device allows (e.g. reboot a servo).

        Called by a driver node's ``~/recover`` before it re-reads and re-enables; the
        default does nothing (faults that clear themselves, or need a human).
        """

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise NotConnectedError(f'{self.label} is not connected',
                                    'call connect() (or use the driver as a context manager)'
                                    ' before read()/write()')


def check_serial_port(port: str, device: str, hint_cable: str) -> None:
    """Raise PortMissingError / PortPermissionError for a port that cannot be opened.

    Args:
        port: device path, e.g. /dev/ttyUSB0.
        device: what should be there, for the message ("Dynamixel bus", "XBee radio").
        hint_cable: what to check physically ("check the U2D2 cable").
    """
    if not os.path.exists(port):
        raise PortMissingError(f'no {device} on {port}',
                               f'{hint_cable}, and the port name (ls /dev/ttyUSB* /dev/ttyACM*)')
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PortPermissionError(
                f'no permission to open {port} ({device})',
                'add your user to the dialout group (sudo usermod -aG dialout $USER, then log '
                'in again) or install the udev rule from the README') from exc
        raise PortMissingError(f'cannot open {port} ({device}): {exc.strerror}',
                               hint_cable) from exc
    os.close(fd)
