"""
The roach behind a ``robots/hil_world.py`` world (backend ``hil``): the firmware emulator
(``firmware.py``) on the world's twin, every twin access under the world's lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dexmpc_ros.robots.roach.firmware import (BodySensors, EmulatorConfig,
                                              RoachFirmwareEmulator, TwinBody)
from dexmpc_ros.wire.pty_link import PtyLink


class LockedTwinBody:
    """A :class:`TwinBody` on a HIL world's twin, under its lock, applying its resets."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.body = TwinBody(world.twin)
        world.reset_hook = self.body.reset    # body at the origin, legs at their reset phase

    def set_leg_speeds(self, omega: np.ndarray) -> None:
        """Crank speed setpoints (2,) [rad/s]."""
        with self.world.lock:
            self.body.set_leg_speeds(omega)

    def advance(self, dt: float) -> None:
        """Apply a pending reset, then advance ``dt`` seconds."""
        with self.world.lock:
            pending, seed = self.world.take_reset()
            if pending:
                self.world.apply_reset(seed)
            self.body.advance(dt)

    def sensors(self) -> BodySensors:
        """The body's measurements."""
        with self.world.lock:
            return self.body.sensors()


def hil_emulator(world: Any) -> RoachFirmwareEmulator:
    """The basestation + firmware at ``world.port``, in the telemetry mode the driver uses."""
    config = EmulatorConfig(
        robot_address=int(world.spec.driver.get('robot_address', 0x0001)),
        baudrate=int(world.spec.driver.get('baud', 57600)),
        telemetry=str(world.spec.driver.get('telemetry', 'stream')))
    return RoachFirmwareEmulator(PtyLink(world.port, drop_when_full=True),
                                 LockedTwinBody(world), config)
