"""
The wx250s servo table and the unit conversions between servo registers and joints.

Nine X-series servos drive the WidowX 250 6DOF (hardware.md §1.2): shoulder and elbow
each have a second, mirrored "shadow" servo that must receive the same goal as its
master; with Drive_Mode bit0 (reverse) set on the mirrored servos (the shadows and
wrist_angle) the same tick value means the same joint angle on every servo.

What is inherent to the arm (which servo model sits where, which servo is whose shadow)
is code here; what a lab may change (IDs, reverse flags, gripper geometry) comes from
the ``driver:`` section of ``config/robots/widowx.yaml``.

Conversions:
    angle:   rad = (tick - 2048) * 2 pi / 4096          (2048 = 0 rad, hardware.md §1.2)
    gripper: the Interbotix horn-and-arm linkage (interbotix_xs_sdk, hardware.md §1.3):
             d(theta) = r sin(theta) + sqrt(l^2 - r^2 cos^2(theta)), left_finger = d,
             right_finger = -d, r = horn radius 0.014 m, l = arm length 0.024 m. Its
             inverse is exact: sin(theta) = (d^2 + r^2 - l^2) / (2 r d). Over the finger
             range 15-37 mm the servo turns from -0.378 to +1.268 rad; d(theta) is
             monotonic on (-pi/2, pi/2).
    effort:  XM430-W350: torque = current x 1.793 N m/A (Interbotix motor_specs_wx250s.yaml;
             the e-manual's 4.1 N m at 2.3 A stall gives 1.78). XL430-W250 reports load in
             0.1 % of its 1.5 N m stall torque (e-manual, 12 V). Both are linear
             approximations, good to ~20 %; a dual-servo joint sums its servos' torques.
             Finger force from gripper torque by virtual work: F = tau / (2 dd/dtheta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.wire.dynamixel_protocol import (CURRENT_UNIT_A, LOAD_UNIT, VELOCITY_UNIT_RAD_S,
                                                X_SERIES, XL430_W250, XM430_W350, from_bytes)

TICKS_PER_REV = 4096
CENTER_TICK = 2048
RAD_PER_TICK = 2 * math.pi / TICKS_PER_REV
MAX_TICK = TICKS_PER_REV - 1

#: N m per A of Present Current (XM430-W350)
TORQUE_CONSTANT_NM_PER_A = {XM430_W350: 1.793}
#: N m at 100 % Present Load (XL430-W250, which has no current sensor)
STALL_TORQUE_NM = {XL430_W250: 1.5}


@dataclass(frozen=True)
class Servo:
    """
    One servo of the arm.

    Attributes:
        name: motor name as in the Interbotix motor config (``shoulder_shadow``).
        id: Dynamixel ID.
        model: expected model number (``dynamixel_protocol.MODEL_NAMES``).
        joint: spec joint it drives (``left_finger`` for the gripper).
        reverse: Drive_Mode bit0; set on servos mounted mirrored to the joint axis.
        master: for a shadow, the name of the servo whose goal it copies; else None.
    """

    name: str
    id: int
    model: int
    joint: str
    reverse: bool = False
    master: str | None = None

    @property
    def is_shadow(self) -> bool:
        """True for a servo that only follows its master."""
        return self.master is not None

    @property
    def label(self) -> str:
        """'servo 4 (elbow)', for messages."""
        return f'servo {self.id} ({self.name})'


@dataclass(frozen=True)
class GripperLinkage:
    """
    Servo horn + arm driving the two fingers symmetrically (Interbotix gripper).

    Attributes:
        horn_radius: r [m].
        arm_length: l [m], must exceed r.
    """

    horn_radius: float = 0.014
    arm_length: float = 0.024

    def __post_init__(self) -> None:
        if not 0 < self.horn_radius < self.arm_length:
            raise ValueError(f'gripper needs 0 < horn_radius ({self.horn_radius} m) < '
                             f'arm_length ({self.arm_length} m)')

    def finger(self, theta: np.ndarray | float) -> np.ndarray:
        """Servo angle theta [rad] -> left finger position d [m] (right = -d)."""
        r, arm = self.horn_radius, self.arm_length
        theta = np.clip(np.asarray(theta, dtype=np.float64), -math.pi / 2, math.pi / 2)
        return r * np.sin(theta) + np.sqrt(arm ** 2 - (r * np.cos(theta)) ** 2)

    def angle(self, finger: np.ndarray | float) -> np.ndarray:
        """Left finger position d [m] -> servo angle [rad] (d clipped to the reachable range)."""
        r, arm = self.horn_radius, self.arm_length
        d = np.clip(np.asarray(finger, dtype=np.float64), arm - r + 1e-9, arm + r)
        return np.arcsin(np.clip((d ** 2 + r ** 2 - arm ** 2) / (2 * r * d), -1.0, 1.0))

    def finger_rate(self, theta: np.ndarray | float) -> np.ndarray:
        """dd/dtheta [m/rad] at servo angle theta (finger speed per servo speed)."""
        r, arm = self.horn_radius, self.arm_length
        theta = np.clip(np.asarray(theta, dtype=np.float64), -math.pi / 2, math.pi / 2)
        root = np.sqrt(arm ** 2 - (r * np.cos(theta)) ** 2)
        return r * np.cos(theta) + r ** 2 * np.cos(theta) * np.sin(theta) / root


# Interbotix wx250s: (name, default ID, model, joint, master). Reverse flags come from YAML.
_WX250S_ROLES = (
    ('waist', 1, XM430_W350, 'waist', None),
    ('shoulder', 2, XM430_W350, 'shoulder', None),
    ('shoulder_shadow', 3, XM430_W350, 'shoulder', 'shoulder'),
    ('elbow', 4, XM430_W350, 'elbow', None),
    ('elbow_shadow', 5, XM430_W350, 'elbow', 'elbow'),
    ('forearm_roll', 6, XM430_W350, 'forearm_roll', None),
    ('wrist_angle', 7, XM430_W350, 'wrist_angle', None),
    ('wrist_rotate', 8, XL430_W250, 'wrist_rotate', None),
    ('gripper', 9, XL430_W250, 'left_finger', None),
)
_DEFAULT_REVERSE = ('shoulder_shadow', 'elbow_shadow', 'wrist_angle')


def wx250s_servos(driver: Mapping | None = None) -> tuple[Servo, ...]:
    """
    The nine servos, IDs and reverse flags from a spec's ``driver`` section.

    Args:
        driver: ``RobotSpec.driver`` (keys ``servo_ids``, ``reverse_drive_mode``); missing
            keys take the Interbotix defaults.

    Raises:
        ConfigError: an unknown motor name, or IDs that repeat or leave 0-252.
    """
    driver = driver or {}
    ids = dict(driver.get('servo_ids') or {})
    reverse = set(driver.get('reverse_drive_mode', _DEFAULT_REVERSE))
    names = {role[0] for role in _WX250S_ROLES}
    unknown = (set(ids) | reverse) - names
    if unknown:
        raise ConfigError(f'widowx driver: unknown motor names {sorted(unknown)} '
                          f'(known: {", ".join(role[0] for role in _WX250S_ROLES)})')
    servos = tuple(Servo(name, int(ids.get(name, default)), model, joint, name in reverse,
                         master) for name, default, model, joint, master in _WX250S_ROLES)
    used = [s.id for s in servos]
    if len(set(used)) != len(used) or not all(0 <= i <= 252 for i in used):
        raise ConfigError(f'widowx driver: servo_ids must be distinct and in 0-252, got '
                          f'{dict(zip([s.name for s in servos], used))}')
    return servos


def gripper_linkage(driver: Mapping | None = None) -> GripperLinkage:
    """The gripper geometry from a spec's ``driver`` section (Interbotix defaults)."""
    driver = driver or {}
    try:
        return GripperLinkage(float(driver.get('gripper_horn_radius', 0.014)),
                              float(driver.get('gripper_arm_length', 0.024)))
    except ValueError as exc:
        raise ConfigError(f'widowx driver: {exc}') from exc


# Angle and effort conversions -------------------------------------------------------
def tick_to_rad(ticks: np.ndarray | int) -> np.ndarray:
    """Position register [ticks] -> angle [rad], 2048 = 0 rad."""
    return (np.asarray(ticks, dtype=np.float64) - CENTER_TICK) * RAD_PER_TICK


def rad_to_tick(rad: np.ndarray | float) -> np.ndarray:
    """Angle [rad] -> nearest position register value [ticks] (int64)."""
    return np.rint(np.asarray(rad, dtype=np.float64) / RAD_PER_TICK + CENTER_TICK).astype(
        np.int64)


def torque_from_raw(model: int, raw: int) -> float:
    """Signed Present Current (XM) / Present Load (XL) register value -> torque [N m]."""
    if model in TORQUE_CONSTANT_NM_PER_A:
        return raw * CURRENT_UNIT_A * TORQUE_CONSTANT_NM_PER_A[model]
    if model in STALL_TORQUE_NM:
        return raw * LOAD_UNIT * STALL_TORQUE_NM[model]
    return math.nan


def raw_from_torque(model: int, torque: float) -> int:
    """Inverse of :func:`torque_from_raw`, rounded (used by the emulator)."""
    if model in TORQUE_CONSTANT_NM_PER_A:
        return int(round(torque / (CURRENT_UNIT_A * TORQUE_CONSTANT_NM_PER_A[model])))
    if model in STALL_TORQUE_NM:
        return int(round(torque / (LOAD_UNIT * STALL_TORQUE_NM[model])))
    return 0


def tick_limits(servo: Servo, spec: RobotSpec, gripper: GripperLinkage) -> tuple[int, int]:
    """Goal-position range [ticks] of ``servo``: its joint's spec limits, within 0-4095."""
    joint = next(j for j in spec.joints if j.name == servo.joint)
    if servo.joint == 'left_finger':
        low, high = gripper.angle(joint.lower), gripper.angle(joint.upper)
    else:
        low, high = joint.lower, joint.upper
    lo, hi = sorted(int(np.clip(rad_to_tick(v), 0, MAX_TICK)) for v in (low, high))
    return lo, hi


def joint_state_from_replies(raw: Mapping[int, bytes], start: int, servos: Sequence[Servo],
                             joint_names: Sequence[str], gripper: GripperLinkage,
                             shadow_tolerance_rad: float
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """
    Joint position, velocity, effort (``joint_names`` order, SI units) from sync-read replies.

    Args:
        raw: {servo ID: bytes from address ``start``} covering present current, velocity
            and position; a servo may be missing (it did not answer).
        start: the register address the replies begin at.
        servos: the servo table; ``joint_names``: the spec's joints (``right_finger``
            mirrors ``left_finger``).
        gripper: finger linkage; ``shadow_tolerance_rad``: master/shadow gap that is a
            fault [rad].

    Returns:
        (position, velocity, effort, faults): NaN for a joint whose master servo is
        missing, and for the effort of a joint missing any of its servos (a sum of one
        would be half); faults name shadows too far from their master.
    """
    def field(dxl_id: int, name: str) -> int:
        item = X_SERIES[name]
        return from_bytes(raw[dxl_id][item.address - start:][:item.size], signed=True)

    names = list(joint_names)
    position, velocity, effort = (np.full(len(names), np.nan) for _ in range(3))
    by_name = {s.name: s for s in servos}
    for servo in (s for s in servos if not s.is_shadow and s.id in raw):
        j = names.index(servo.joint)
        angle = float(tick_to_rad(field(servo.id, 'present_position')))
        speed = field(servo.id, 'present_velocity') * VELOCITY_UNIT_RAD_S
        tau = sum(torque_from_raw(s.model, field(s.id, 'present_current')) if s.id in raw
                  else math.nan for s in servos if s.joint == servo.joint)
        if servo.joint == 'left_finger':
            rate = float(gripper.finger_rate(angle))
            position[j], velocity[j] = float(gripper.finger(angle)), speed * rate
            effort[j] = tau / (2 * rate) if rate > 1e-6 else math.nan
        else:
            position[j], velocity[j], effort[j] = angle, speed, tau
    if 'right_finger' in names:
        src, dst = names.index('left_finger'), names.index('right_finger')
        position[dst], velocity[dst], effort[dst] = \
            -position[src], -velocity[src], -effort[src]
    faults = []
    for shadow in (s for s in servos if s.is_shadow):
        master = by_name[shadow.master]
        if shadow.id in raw and master.id in raw:
            gap = abs(float(tick_to_rad(field(shadow.id, 'present_position'))
                            - tick_to_rad(field(master.id, 'present_position'))))
            if gap > shadow_tolerance_rad:
                faults.append(f'{shadow.name} is {gap:.3f} rad away from {master.name}')
    return position, velocity, effort, tuple(faults)
