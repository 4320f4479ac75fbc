"""Run audit (safety/audit.py): violation counting, stop times, in-process fuzzing."""

from __future__ import annotations

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.widowx.kinematics import wx250s_ee_position
from dexmpc_ros.safety.audit import (
    POSITION_TOLERANCE,
    POSITION_TOLERANCE_MAX,
    audit,
    fuzz_in_process,
    settle_time,
)


def test_audit_counts_each_kind_of_violation():
    spec = load_robot_spec('widowx')
    n = len(spec.joints)
    home = np.array(spec.default_pose)
    pos = np.tile(home, (5, 1))
    vel = np.zeros((5, n))
    # wrist_rotate turns about the gripper's axis: the end effector stays where it is
    span = spec.joints[5].upper - spec.joints[5].lower
    tolerance = min(POSITION_TOLERANCE * span, POSITION_TOLERANCE_MAX)
    pos[1, 5] = spec.joints[5].upper + 2 * tolerance                 # past a limit
    pos[2, 5] = spec.joints[5].lower - 0.5 * tolerance               # within tolerance
    pos[3, 1:3] = (1.5, 0.9)                                         # gripper into the table
    assert wx250s_ee_position(pos[3, :6])[2] < 0.0
    vel[4, 0] = 1.3 * spec.joints[0].velocity                        # overspeed (reported)
    vel[4, 7] = 10.0                                                  # passive: not judged
    commands = np.tile(spec.default_command, (3, 1))
    commands[1, 6] = 0.0371                                          # finger past 0.037
    commands[2, 2] = np.nan
    found = audit(spec, pos, vel, commands)
    assert (found.samples, found.commands) == (5, 3)
    assert (found.position, found.workspace, found.command, found.overspeed) == (1, 1, 2, 1)
    assert found.total == 4
    assert found.worst['position'] == pytest.approx(2 * tolerance)
    assert found.worst['overspeed'] == pytest.approx(0.3)


def test_velocity_robot_commands_judged_by_speed():
    spec = load_robot_spec('roach')
    pos, vel = np.zeros((2, 2)), np.zeros((2, 2))
    found = audit(spec, pos, vel, np.array([[56.5, -56.5], [56.6, 0.0]]))
    assert found.command == 1 and found.position == 0 and found.total == 1


def test_settle_time():
    t = np.arange(10) * 100  # ns, sample every 100 ns
    v = np.array([[5.0], [4.0], [0.1], [0.2], [0.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    assert settle_time(t, v, since_ns=150, threshold=0.5) == pytest.approx(50e-9)
    assert settle_time(t, v, since_ns=150, threshold=0.15) == pytest.approx(250e-9)
    assert settle_time(t, v, since_ns=0, threshold=-1.0) is None  # never below
    assert settle_time(t, v, since_ns=2000, threshold=1.0) is None  # no data after


@pytest.mark.parametrize('robot', ['widowx', 'hand24', 'roach'])
def test_in_process_fuzz_never_leaves_the_limits(robot):
    found, stats = fuzz_in_process(robot, 12_000, seed=5)
    assert found.total == 0, found
    assert found.commands >= 0.9 * found.samples  # a command (or hold) every step
    assert stats['state'] == 'ARMED'
    assert stats['passed'] + stats['clamped'] > 100, stats
    for rule in ('finite', 'names', 'age', 'rate', 'step'):
        assert stats[f'rule/{rule}'] > 0, (rule, stats)
