"""
The world behind the wire: a robot's MuJoCo twin served by its wire-protocol emulator.

Hardware-in-the-loop without hardware. The robot's real driver (WidowXDriver over
``dynamixel_sdk``, RoachDriver over ``pyserial``) opens ``port`` as if it were the U2D2 or
the XBee basestation; the emulator behind it (``wire/dynamixel_bus.py``, ``roach/firmware.py``)
speaks the real wire protocol and moves the twin on its own clock: the driver's goals
become the twin's commands, the twin's joints become the servos' registers or the
telemetry records. Everything a lab measures *outside* the robot -- the task scene's state
(object and target positions, the body pose a tracker gives) and the task's reward -- is
read here with :meth:`HilWorld.observe`, as a mocap system or tracker would.

Locking: the emulator thread steps the twin; ``observe`` and ``request_reset`` come from
another thread (the ROS node). Every twin access on either side holds one lock, so an
observation never sees half a physics step.

Resets. ``request_reset(seed)`` is applied by the emulator thread at its next twin step,
so the registers or telemetry the driver reads next already show the new episode:

- WidowX: ``twin.reset(seed)`` (arm at the default pose, new target and cube), one period
  holding that pose, and every torque-on servo's goal set to where it now is, so the arm
  holds the reset pose until the driver's next goal (as the twin node's reset does);
- roach: ``TwinBody.reset(seed)`` (body at the origin, legs at their reset phase, new
  waypoints); the firmware keeps its leg setpoints until the next command.

``observe().resets`` counts applied resets and ``reset_ns`` is the wall-clock time
(``time.time_ns``, the ROS clock of nodes without simulated time) of the last one: a
state the driver stamped after it shows the new episode.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.wire.pty_link import PtyLink
from dexmpc_ros.robots.twin import BodyPose, Twin
from dexmpc_ros.robots.registry import make_twin

log = logging.getLogger(__name__)

_NO_RESET = object()      # no reset pending (None is a valid seed: "continue the RNG")


@dataclass(frozen=True)
class WorldSample:
    """
    One reading of the world, taken atomically between two twin steps.

    Attributes:
        task_names: names of the task-state entries (k,).
        task_values: the task state (k,) (units per the twin's ``task_state``).
        reward: the task's reward at this state.
        done: the task is complete (an episode should end).
        odom: body pose and twist for mobile robots, else None.
        resets: resets applied so far (the one at construction included).
        reset_ns: wall-clock time of the last applied reset [ns].
        twin_time_s: the twin's simulated time [s] (advances on the emulator's clock).
    """

    task_names: list[str]
    task_values: np.ndarray
    reward: float
    done: bool
    odom: BodyPose | None
    resets: int
    reset_ns: int
    twin_time_s: float


class HilWorld:
    """
    A robot's twin behind its wire-protocol emulator on a pseudo-terminal at ``port``.

    Args:
        robot: robot spec name (``widowx`` or ``roach``: the robots with a serial driver).
        port: where the emulated port appears (a symlink; parent folders are created).
        twin_options: twin constructor options (``task``, ``friction``, ...).
        seed: seed of the first episode's reset (None: the twin's own RNG).
        spec: robot spec (default: ``load_robot_spec(robot)``).

    Raises:
        ConfigError: a robot without an emulator, or twin options the twin rejects.
    """

    def __init__(self, robot: str, port: str, twin_options: dict[str, Any] | None = None,
                 seed: int | None = None, spec: RobotSpec | None = None) -> None:
        if robot not in EMULATORS:
            raise ConfigError(f'no wire-protocol emulator for robot {robot!r}; '
                              f'hardware-in-the-loop runs: {", ".join(sorted(EMULATORS))}')
        if not port:
            raise ConfigError('hil world: port must not be empty')
        self.spec = spec if spec is not None else load_robot_spec(robot)
        try:
            self.twin: Twin = make_twin(robot, spec=self.spec, **(twin_options or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'hil world: twin options {twin_options!r}: {exc}') from exc
        self.port = port
        self._lock = threading.RLock()
        self._pending: Any = _NO_RESET
        self._resets = 0
        self._reset_ns = 0
        self._reset_twin = self.twin.reset          # replaced by the emulator's reset hook
        self._apply_reset(seed)
        parent = os.path.dirname(os.path.abspath(port))
        os.makedirs(parent, exist_ok=True)
        self.emulator = EMULATORS[robot](self)

    # Lifecycle ----------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The port path the driver opens."""
        return self.emulator.path

    def start(self) -> HilWorld:
        """Serve the port from the emulator's thread; returns self."""
        self.emulator.start()
        return self

    def stop(self) -> None:
        """Stop serving (the port disappears) and free the twin."""
        self.emulator.stop()
        with self._lock:
            self.twin.close()

    def __enter__(self) -> HilWorld:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # World interface ----------------------------------------------------------------------
    def observe(self) -> WorldSample:
        """The task state, reward, done flag and body pose now (see :class:`WorldSample`)."""
        with self._lock:
            names, values = self.twin.task_state()
            return WorldSample(list(names), np.array(values, dtype=np.float64),
                               float(self.twin.reward()), bool(self.twin.done()),
                               self.twin.odom(), self._resets, self._reset_ns,
                               float(self.twin.time))

    def request_reset(self, seed: int | None = None) -> None:
        """Start a new episode at the emulator's next twin step (``seed`` as twin.reset)."""
        with self._lock:
            self._pending = seed

    @property
    def reset_pending(self) -> bool:
        """A requested reset has not been applied yet."""
        with self._lock:
            return self._pending is not _NO_RESET

    def stats(self) -> dict[str, float]:
        """Emulator counters for diagnostics (packets, records, physics overruns)."""
        emulator = self.emulator
        if hasattr(emulator, 'stats'):
            return {f'bus_{k}': float(v) for k, v in dict(emulator.stats).items()}
        return {'telemetry_records': float(emulator.sent_records)}

    # Emulator side (called on the emulator thread, holding the lock) ---------------------
    def _take_reset(self) -> Any:
        pending, self._pending = self._pending, _NO_RESET
        return pending

    def _apply_reset(self, seed: int | None) -> None:
        self._reset_twin(seed)
        self._resets += 1
        self._reset_ns = time.time_ns()


# Robot-specific wiring ------------------------------------------------------------------------
class _WidowXBusPhysics:
    """WidowXTwinPhysics under the world's lock, applying requested resets."""

    def __init__(self, world: HilWorld) -> None:
        from dexmpc_ros.robots.widowx.physics import WidowXTwinPhysics

        self.world = world
        self.physics = WidowXTwinPhysics(twin=world.twin)
        self.bus = None                    # set once the bus exists

    def __call__(self, inputs: dict, dt: float) -> dict:
        with self.world._lock:
            seed = self.world._take_reset()
            if seed is _NO_RESET:
                return self.physics(inputs, dt)
            self.world._apply_reset(seed)
            # hold the reset pose for this period; then goals := the new present positions
            held = {i: dataclasses.replace(m, torque_on=False) for i, m in inputs.items()}
            outputs = self.physics(held, dt)
            if self.bus is not None:
                for dxl_id, out in outputs.items():
                    if inputs[dxl_id].torque_on:
                        self.bus.servos[dxl_id].set('goal_position', out.position)
            return outputs


def _widowx_emulator(world: HilWorld):
    from dexmpc_ros.wire.dynamixel_bus import DynamixelBusEmulator
    from dexmpc_ros.robots.widowx.physics import widowx_servos

    physics = _WidowXBusPhysics(world)
    baud = int(world.spec.driver.get('baud', 1_000_000))
    bus = DynamixelBusEmulator(widowx_servos(physics.physics.initial_ticks(), world.spec),
                               PtyLink(world.port), physics,
                               physics_period_s=physics.physics.period_s, baudrate=baud)
    physics.bus = bus
    return bus


class _LockedTwinBody:
    """A roach TwinBody under the world's lock, applying requested resets."""

    def __init__(self, world: HilWorld) -> None:
        from dexmpc_ros.robots.roach.firmware import TwinBody

        self.world = world
        self.body = TwinBody(world.twin)
        world._reset_twin = self.body.reset

    def set_leg_speeds(self, omega: np.ndarray) -> None:
        """Crank speed setpoints (2,) [rad/s]."""
        with self.world._lock:
            self.body.set_leg_speeds(omega)

    def advance(self, dt: float) -> None:
        """Apply a pending reset, then advance ``dt`` seconds."""
        with self.world._lock:
            seed = self.world._take_reset()
            if seed is not _NO_RESET:
                self.world._apply_reset(seed)
            self.body.advance(dt)

    def sensors(self):
        """The body's measurements (BodySensors)."""
        with self.world._lock:
            return self.body.sensors()


def _roach_emulator(world: HilWorld):
    from dexmpc_ros.robots.roach.firmware import EmulatorConfig, RoachFirmwareEmulator

    config = EmulatorConfig(
        robot_address=int(world.spec.driver.get('robot_address', 0x0001)),
        baudrate=int(world.spec.driver.get('baud', 57600)),
        telemetry=str(world.spec.driver.get('telemetry', 'stream')))   # as the driver is told
    return RoachFirmwareEmulator(PtyLink(world.port, drop_when_full=True),
                                 _LockedTwinBody(world), config)


#: robot -> builder of its (not yet started) emulator around the world's twin.
EMULATORS: dict[str, Callable[[HilWorld], Any]] = {
    'widowx': _widowx_emulator,
    'roach': _roach_emulator,
}
