"""
Audit a run: did anything that reached the robot break its limits? (pure numpy)

Used by the fault-injection tests and ``bench/safety.py`` on what a bag recorded: the
``command`` messages the supervisor let through and the twin's measured ``joint_states``.
The measured state is allowed a small tolerance past a limit (5 % of the joint's range, at
most 0.01): a position servo commanded to a limit settles on it, and MuJoCo's soft joint
limits let a joint pressed by contact sit a hair past it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.kinematics import load_kinematics
from dexmpc_ros.safety.limits import CommandLimits
from dexmpc_ros.safety.supervisor import SupervisorConfig

#: Measured positions may exceed a limit by this fraction of the joint's range (at most
#: :data:`POSITION_TOLERANCE_MAX`) before it counts. MuJoCo's joint limits are soft: the
#: hand twin's RFJ3, commanded onto its limit while pressing, sits 1.7 mrad (0.1 % of its
#: range) past it; the WidowX twin's gripper fingers, pressed into their stops by the
#: accelerations of a full-speed arm, up to 0.74 mm (3.4 % of their 22 mm range).
POSITION_TOLERANCE = 0.05
POSITION_TOLERANCE_MAX = 0.01  # [rad or m]
#: Measured end-effector positions may leave the workspace box by this much [m]. None: the
#: supervisor stops a moving arm short of the box by its braking distance.
WORKSPACE_TOLERANCE = 0.0
#: Measured speeds may exceed the velocity limit by this fraction (servo transients).
VELOCITY_TOLERANCE = 0.25


@dataclass
class Violations:
    """
    Limit violations found in a run.

    Attributes:
        samples: measured states checked.
        commands: ``command`` messages checked.
        position: measured states with a joint past its position limit (+ tolerance).
        overspeed: measured states with an actuated joint faster than its limit (+
            tolerance). Reported, not counted in :attr:`total`: the supervisor bounds the
            commanded speed, but contact can push a joint faster than any command does
            (the WidowX twin's 5 N gripper fingers hit by the cube move up to 20 mm in one
            50 ms period toward a target at most 5 mm away).
        workspace: measured states with the end effector outside the box (+ tolerance).
        command: ``command`` messages outside the limits (any amount) or non-finite.
        worst: rule -> largest excess seen [rad, m or fraction of the velocity limit].
    """

    samples: int = 0
    commands: int = 0
    position: int = 0
    overspeed: int = 0
    workspace: int = 0
    command: int = 0
    worst: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Violations of the position limits, the workspace box and the command limits."""
        return self.position + self.workspace + self.command


def audit(spec: RobotSpec, positions: np.ndarray, velocities: np.ndarray,
          commands: np.ndarray) -> Violations:
    """
    Count limit violations.

    Args:
        spec: the robot.
        positions: (T, n) measured joint positions, ``joint_states`` order.
        velocities: (T, n) measured joint velocities.
        commands: (K, m) values of the ``command`` messages, command order.

    Returns:
        The counts and worst excesses.
    """
    out = Violations(samples=len(positions), commands=len(commands))
    lower = spec.limits_array('lower', actuated_only=False)
    upper = spec.limits_array('upper', actuated_only=False)
    speed = spec.limits_array('velocity', actuated_only=False)
    if len(positions):
        excess = np.maximum(lower - positions, 0.0) + np.maximum(positions - upper, 0.0)
        with np.errstate(invalid='ignore'):
            tolerance = np.fmin(POSITION_TOLERANCE * (upper - lower), POSITION_TOLERANCE_MAX)
        out.position = int((excess > tolerance).any(axis=1).sum())
        out.worst['position'] = float(excess.max())
        # Speeds of actuated joints only: a passive joint's speed is physics, not command
        # (the WidowX twin's right finger, tied to the left by a soft equality constraint,
        # spikes to 4x its limit for one sample when it lands on its stop).
        act = spec.actuated_index
        over = np.abs(velocities[:, act]) / speed[act] - 1.0
        out.overspeed = int((over > VELOCITY_TOLERANCE).any(axis=1).sum())
        out.worst['overspeed'] = float(np.nanmax(over))
        if spec.workspace is not None:
            # the configured box itself, not the command box shrunk by its margin
            box = spec.workspace
            kin = load_kinematics(box.kinematics)
            arm = [spec.joint_names.index(j) for j in kin.joints]
            ee = kin.ee_position(positions[:, arm])
            box_excess = (np.maximum(np.array(box.lower) - ee, 0.0)
                          + np.maximum(ee - np.array(box.upper), 0.0)).sum(axis=1)
            out.workspace = int((box_excess > WORKSPACE_TOLERANCE).sum())
            out.worst['workspace'] = float(box_excess.max())
    if len(commands):
        limits = CommandLimits.from_spec(spec)
        bad = ~np.isfinite(commands).all(axis=1)
        if spec.command_interface == 'position':
            bad |= ((commands < limits.lower) | (commands > limits.upper)).any(axis=1)
        else:
            bad |= (np.abs(commands) > limits.velocity).any(axis=1)
        out.command = int(bad.sum())
    return out


def settle_time(times_ns: np.ndarray, velocities: np.ndarray, since_ns: int,
                threshold: float) -> float | None:
    """
    Seconds from ``since_ns`` until every joint stays below ``threshold`` speed.

    Args:
        times_ns: (T,) sample times [ns], increasing.
        velocities: (T, k) measured speeds of the joints that must stop [rad/s or m/s].
        since_ns: the event (e-stop, controller death) [ns].
        threshold: speed below which a joint counts as stopped.

    Returns:
        Time of the first sample after which all later samples are below the threshold
        [s], or None when the joints never settle within the data.
    """
    after = times_ns >= since_ns
    moving = (np.abs(velocities) >= threshold).any(axis=1) & after
    if not after.any():
        return None
    last_moving = np.flatnonzero(moving)
    if last_moving.size == 0:
        first = np.flatnonzero(after)[0]
        return (times_ns[first] - since_ns) * 1e-9
    k = last_moving[-1] + 1
    if k >= len(times_ns):
        return None
    return (times_ns[k] - since_ns) * 1e-9


def fuzz_in_process(robot: str, commands: int, seed: int = 0, rate_hz: float = 1000.0,
                    config: SupervisorConfig | None = None) -> tuple[Violations, dict]:
    """
    Fuzz a supervisor in front of a MuJoCo twin in one process, on a simulated clock.

    ``rate_hz`` hostile commands per second (:class:`~dexmpc_ros.safety.fuzz.CommandFuzzer`)
    go through :class:`Supervisor`; the newest accepted (or hold) command drives the twin,
    which steps once per control period and reports its state back. No DDS: this isolates
    the rules and the state machine, and runs ~10x faster than real time.

    Args:
        robot: robot spec name (its twin is built with default options).
        commands: number of hostile commands.
        seed: fuzz seed.
        rate_hz: hostile commands per simulated second.
        config: supervisor settings (default: auto-arm, everything else default).

    Returns:
        (violations in the twin's measured states and the commands sent to it,
        supervisor stats at the end).
    """
    from dexmpc_ros.core.robot_spec import load_robot_spec
    from dexmpc_ros.robots.registry import make_twin
    from dexmpc_ros.safety.fuzz import CommandFuzzer, FuzzConfig
    from dexmpc_ros.safety.supervisor import Supervisor

    spec = load_robot_spec(robot)
    twin = make_twin(spec.name)
    supervisor = Supervisor(spec, config or SupervisorConfig(auto_arm=True))
    fuzzer = CommandFuzzer(spec, FuzzConfig(seed=seed))
    period_ns = int(round(spec.period_s * 1e9))
    per_step = max(1, int(round(rate_hz * spec.period_s)))
    now = 1_000_000_000_000
    twin.reset(seed)
    positions, velocities, sent = [], [], []
    velocity_robot = spec.command_interface == 'velocity'
    try:
        for _ in range(-(-commands // per_step)):
            reading = twin.joints()
            positions.append(reading.position)
            velocities.append(reading.velocity)
            supervisor.on_state(reading.position, reading.velocity, now, reading.effort, now)
            pose = twin.odom()
            if pose is not None:
                supervisor.on_body_rate(pose.angular, now)
            measured = (reading.velocity if velocity_robot else reading.position)
            measured = measured[spec.actuated_index]
            command = None
            for k in range(per_step):
                t = now + k * period_ns // per_step
                cmd = fuzzer.next(measured, now, t)
                decision = supervisor.on_command(cmd.names, cmd.values, cmd.stamp_ns, t)
                if decision.accepted:
                    command = decision.values
            hold = supervisor.tick(now + period_ns - 1)
            command = hold if command is None else command
            if command is not None:
                sent.append(command)
                twin.apply_command(command)
            twin.step()
            now += period_ns
    finally:
        twin.close()
    found = audit(spec, np.array(positions), np.array(velocities),
                  np.array(sent) if sent else np.empty((0, len(spec.command_names))))
    return found, supervisor.stats()
