"""
An in-memory arm implementing base.Driver, for the driver node's tests only.

The driver node is generic over base.Driver, so its test uses this double instead of a
protocol driver: the real WidowX and roach drivers are tested elsewhere against their
wire-protocol emulators on pseudo-terminals (test_widowx_driver.py, test_roach_driver.py).
Loaded by the node process as ``driver:=fake_arm_driver:FakeArmDriver`` (test/ on
PYTHONPATH), through the registry's ``module:Class`` hook.

Observability across the process boundary: every call is appended to ``events_file``
(one word per line); while ``fault_file`` exists, read() raises HardwareFaultError with
the file's text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.driver import Driver, DriverState, HardwareFaultError, PortMissingError


@dataclass(frozen=True)
class FakeArmConfig:
    """
    Attributes:
        port: the (pretend) serial port.
        present: False: connect() fails as an unplugged U2D2 would.
        events_file: append connect/enable/write/disable/disconnect here ('' = off).
        fault_file: while this file exists, read() raises HardwareFaultError ('' = off).
    """

    port: str = '/dev/ttyFAKE'
    present: bool = True
    events_file: str = ''
    fault_file: str = ''


class FakeArmDriver(Driver):
    """Positions jump to the last command; a temperature reading in ``extra``."""

    config_class = FakeArmConfig

    def __init__(self, config: FakeArmConfig, spec: RobotSpec):
        self.config = config
        self.spec = spec
        self.label = f'fake arm on {config.port}'
        self._connected = False
        self._position = np.asarray(spec.default_pose, dtype=np.float64)

    def _event(self, text: str) -> None:
        if self.config.events_file:
            with open(self.config.events_file, 'a') as f:
                f.write(text + '\n')

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if not self.config.present:
            raise PortMissingError(f'no Dynamixel bus on {self.config.port}',
                                   'check the U2D2 cable and permissions (dialout group)')
        self._connected = True
        self._event('connect')

    def disconnect(self) -> None:
        if self._connected:
            self._event('disconnect')
        self._connected = False

    def enable(self) -> None:
        self._require_connected()
        self._event('enable')

    def disable(self) -> None:
        self._event('disable')

    def read(self) -> DriverState:
        self._require_connected()
        fault = Path(self.config.fault_file) if self.config.fault_file else None
        if fault is not None and fault.exists():
            raise HardwareFaultError(fault.read_text().strip(), 'reboot the servo')
        n = len(self._position)
        return DriverState(tuple(self.spec.joint_names), self._position.copy(), np.zeros(n),
                           np.full(n, np.nan), time.monotonic(),
                           extra={'temperature_shoulder_degC': 36.5})

    def write(self, command: np.ndarray) -> np.ndarray:
        self._require_connected()
        self._position[self.spec.actuated_index] = command
        self._event('write ' + ' '.join(f'{v:.3f}' for v in command))
        return np.asarray(command, dtype=np.float64)
