"""
The WidowX's emulated servos, and the WidowX MuJoCo twin as the bus emulator's physics.

Mirrored mounting: the servos that the Interbotix config runs in reverse drive mode
(shadows, wrist_angle) are mounted mirrored, so their shaft turns opposite to the joint.
The emulator models that: a servo's register frame is ``tick = 2048 + s * joint_ticks``
with ``s = mount x drive`` (mount = -1 for a mirrored servo, drive = -1 with Drive_Mode
bit0 set). A driver that forgets to set reverse mode on a shadow sees it read the
mirror image of its master, as on the real arm.

Twin physics, per call (one control period of the twin): each master's goal (torque on)
becomes the twin's joint target, ``twin.apply_command`` + ``twin.step``, then the twin's
joints give every servo's present position, velocity and current. Shadows' goals are not
simulated separately (the master drives the joint); a torque-off master's joint is held
where it is (the twin has no limp mode).
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec, load_robot_spec
from dexmpc_ros.wire.dynamixel_bus import EmulatedServo, MotorInput, MotorOutput
from dexmpc_ros.wire import dynamixel_protocol as dxl
from dexmpc_ros.robots.widowx.servos import (CENTER_TICK, RAD_PER_TICK, Servo, gripper_linkage,
                                             raw_from_torque, rad_to_tick, tick_limits,
                                             wx250s_servos)


def joint_angles(spec: RobotSpec, positions: np.ndarray) -> dict[str, float]:
    """Joint positions (spec order) -> {servo joint: servo-side angle [rad]} (gripper angle)."""
    linkage = gripper_linkage(spec.driver)
    out = dict(zip(spec.joint_names, np.asarray(positions, dtype=np.float64)))
    out['left_finger'] = float(linkage.angle(out['left_finger']))
    return out


def widowx_servos(initial_ticks: dict[int, int] | None = None,
                  spec: RobotSpec | None = None) -> list[EmulatedServo]:
    """
    The nine emulated wx250s servos, factory drive mode 0, shadows' Secondary ID set.

    Args:
        initial_ticks: present position per ID; default: the spec's default pose.
        spec: robot spec (default ``widowx``).
    """
    spec = spec or load_robot_spec('widowx')
    servos = wx250s_servos(spec.driver)
    by_name = {s.name: s for s in servos}
    linkage = gripper_linkage(spec.driver)
    if initial_ticks is None:
        angles = joint_angles(spec, np.asarray(spec.default_pose))
        # factory drive mode 0: a mirrored servo reads the mirror image
        initial_ticks = {s.id: int(CENTER_TICK + _mount(s) * (rad_to_tick(angles[s.joint])
                                                              - CENTER_TICK)) for s in servos}
    out = []
    for s in servos:
        lo, hi = tick_limits(s, spec, linkage)
        secondary = by_name[s.master].id if s.master else 255
        out.append(EmulatedServo(s.id, s.model, initial_ticks[s.id], secondary_id=secondary,
                                 min_position_limit=lo, max_position_limit=hi,
                                 temperature_limit=72 if s.model == dxl.XL430_W250 else 80))
    return out


def _mount(servo: Servo) -> int:
    """-1 for a servo mounted mirrored to its joint (those run in reverse drive mode)."""
    return -1 if servo.reverse else 1


class WidowXTwinPhysics:
    """
    Bus-emulator physics backed by :class:`~dexmpc_ros.robots.widowx.twin.WidowXTwin`.

    Args:
        twin: the twin to drive (default: a new one with ``seed``).
        seed: seed of a new twin.
    """

    def __init__(self, twin=None, seed: int = 0):
        if twin is None:
            from dexmpc_ros.robots.widowx.twin import WidowXTwin
            twin = WidowXTwin(seed=seed)
        self.twin = twin
        self.spec: RobotSpec = twin.spec
        self.servos = wx250s_servos(self.spec.driver)
        self.linkage = gripper_linkage(self.spec.driver)
        self.period_s = float(twin.dt)
        names = self.spec.joint_names
        self._index = {name: names.index(name) for name in names}
        self._masters = {s.joint: s for s in self.servos if not s.is_shadow}

    def initial_ticks(self) -> dict[int, int]:
        """Present position per ID at the twin's current state (factory drive mode 0)."""
        inputs = {s.id: MotorInput(False, 0, 0, False, 0, 0) for s in self.servos}
        return {i: out.position for i, out in self._outputs(inputs).items()}

    def __call__(self, inputs: dict[int, MotorInput], dt: float) -> dict[int, MotorOutput]:
        """Advance the twin one control period (``dt`` is that period) and read it back."""
        reading = self.twin.joints()
        targets = []
        for joint in self.spec.command_names:
            servo = self._masters[joint]
            m = inputs[servo.id]
            here = reading.position[self._index[joint]]
            if not m.torque_on:
                targets.append(here)
                continue
            angle = self._sign(servo, m) * (m.goal - CENTER_TICK) * RAD_PER_TICK
            targets.append(float(self.linkage.finger(angle)) if joint == 'left_finger'
                           else angle)
        self.twin.apply_command(np.asarray(targets))
        self.twin.step()
        return self._outputs(inputs)

    def _sign(self, servo: Servo, m: MotorInput) -> int:
        return _mount(servo) * (-1 if m.reverse else 1)

    def _outputs(self, inputs: dict[int, MotorInput]) -> dict[int, MotorOutput]:
        reading = self.twin.joints()
        out = {}
        for s in self.servos:
            i = self._index[s.joint]
            q, qd, effort = reading.position[i], reading.velocity[i], reading.effort[i]
            if s.joint == 'left_finger':
                angle = float(self.linkage.angle(q))
                rate = float(self.linkage.finger_rate(angle))
                q, qd, effort = angle, qd / rate, 2 * effort * rate
            elif s.joint in ('shoulder', 'elbow'):
                effort /= 2                  # two servos share the joint's torque
            sign = self._sign(s, inputs[s.id])
            out[s.id] = MotorOutput(
                int(CENTER_TICK + sign * (rad_to_tick(q) - CENTER_TICK)),
                int(round(sign * qd / dxl.VELOCITY_UNIT_RAD_S)),
                raw_from_torque(s.model, sign * effort))
        return out
