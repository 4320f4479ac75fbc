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

The robot-specific wiring lives with the robot: ``robots/<robot>/emulator.py:
hil_emulator(world)`` builds the (not yet started) emulator around ``world.twin``; it holds
``world.lock`` around every twin access and applies requested resets
(:meth:`HilWorld.take_reset`, :meth:`HilWorld.apply_reset`). A robot registered with
``hil=True`` in ``robots/registry.py`` must have it.

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

import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.robots.twin import BodyPose, Twin
from dexmpc_ros.robots.registry import ROBOTS, make_twin

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
        hil = sorted(name for name, entry in ROBOTS.items() if entry.hil)
        if robot not in hil:
            raise ConfigError(f'no wire-protocol emulator for robot {robot!r}; '
                              f'hardware-in-the-loop runs: {", ".join(hil)}')
        if not port:
            raise ConfigError('hil world: port must not be empty')
        self.spec = spec if spec is not None else load_robot_spec(robot)
        try:
            self.twin: Twin = make_twin(robot, spec=self.spec, **(twin_options or {}))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'hil world: twin options {twin_options!r}: {exc}') from exc
        self.port = port
        #: held by every twin access, on the emulator's thread and the node's
        self.lock = threading.RLock()
        self._pending: Any = _NO_RESET
        self._resets = 0
        self._reset_ns = 0
        #: what a reset does to the twin; an emulator whose body wraps the twin replaces it
        self.reset_hook: Callable[[int | None], Any] = self.twin.reset
        self.apply_reset(seed)
        parent = os.path.dirname(os.path.abspath(port))
        os.makedirs(parent, exist_ok=True)
        emulator_module = importlib.import_module(f'{ROBOTS[robot].package}.emulator')
        self.emulator = emulator_module.hil_emulator(self)

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
        with self.lock:
            self.twin.close()

    def __enter__(self) -> HilWorld:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # World interface ----------------------------------------------------------------------
    def observe(self) -> WorldSample:
        """The task state, reward, done flag and body pose now (see :class:`WorldSample`)."""
        with self.lock:
            names, values = self.twin.task_state()
            return WorldSample(list(names), np.array(values, dtype=np.float64),
                               float(self.twin.reward()), bool(self.twin.done()),
                               self.twin.odom(), self._resets, self._reset_ns,
                               float(self.twin.time))

    def request_reset(self, seed: int | None = None) -> None:
        """Start a new episode at the emulator's next twin step (``seed`` as twin.reset)."""
        with self.lock:
            self._pending = seed

    @property
    def reset_pending(self) -> bool:
        """A requested reset has not been applied yet."""
        with self.lock:
            return self._pending is not _NO_RESET

    def stats(self) -> dict[str, float]:
        """Emulator counters for diagnostics (packets, records, physics overruns)."""
        emulator = self.emulator
        if hasattr(emulator, 'stats'):
            return {f'bus_{k}': float(v) for k, v in dict(emulator.stats).items()}
        return {'telemetry_records': float(emulator.sent_records)}

    # Emulator side (called on the emulator thread, holding the lock) ---------------------
    def take_reset(self) -> tuple[bool, int | None]:
        """(True, seed) if a reset was requested since the last call (and clear it)."""
        pending, self._pending = self._pending, _NO_RESET
        return (False, None) if pending is _NO_RESET else (True, pending)

    def apply_reset(self, seed: int | None) -> None:
        """Reset the twin through :attr:`reset_hook` and count it."""
        self.reset_hook(seed)
        self._resets += 1
        self._reset_ns = time.time_ns()
