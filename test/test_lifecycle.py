"""
The driver nodes' command check (ros/lifecycle.py: CommandGate) on real messages: the
refusal counters the nodes report, in their order, and safety's names rule (a command
in another joint order is reordered, not refused).
"""

from __future__ import annotations

import numpy as np
import pytest
import rclpy.logging
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.robot_spec import parse_robot_spec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.lifecycle import CommandGate

SPEC = parse_robot_spec({
    'name': 'toyarm', 'command_interface': 'position', 'control_rate_hz': 20.0,
    'default_pose': {'shoulder': 0.0, 'finger': 0.02, 'elbow': 0.5},
    'joints': [
        {'name': 'shoulder', 'lower': -1.0, 'upper': 1.0, 'velocity': 4.0, 'max_step': 0.1,
         'effort': 5.0},
        {'name': 'finger', 'lower': 0.0, 'upper': 0.04, 'velocity': 1.0, 'max_step': 0.01,
         'effort': 5.0, 'actuated': False},
        {'name': 'elbow', 'lower': -2.0, 'upper': 2.0, 'velocity': 1.0, 'max_step': 0.2,
         'effort': 5.0}]}, 'test_lifecycle')
NOW = 1_700_000_000 * 10**9
MS = 1_000_000


@pytest.fixture
def gate() -> CommandGate:
    return CommandGate(SPEC, 'position', age_budget_s=0.5, future_tolerance_s=0.05,
                       logger=rclpy.logging.get_logger('test_lifecycle'))


def command(names, values, age_ns: int = 0) -> JointTrajectory:
    return convert.command_msg(NOW - age_ns, names, np.asarray(values, float), 'position')


def test_a_fresh_well_formed_command_is_forwarded_in_command_order(gate):
    verdict = gate.check(command(['shoulder', 'elbow'], [0.3, -0.4]), True, NOW)
    assert verdict.refused == '' and verdict.values.tolist() == [0.3, -0.4]
    verdict = gate.check(command(['elbow', 'shoulder'], [-0.4, 0.3]), True, NOW)
    assert verdict.refused == '' and verdict.values.tolist() == [0.3, -0.4]


def test_an_inactive_node_forwards_nothing_not_even_a_good_command(gate):
    verdict = gate.check(command(['shoulder', 'elbow'], [0.3, -0.4]), False, NOW)
    assert verdict.values is None and verdict.refused == 'commands_inactive'


@pytest.mark.parametrize('msg, rule', [
    (command(['shoulder', 'wrist'], [0.1, 0.2]), 'names:'),
    (command(['shoulder', 'finger'], [0.1, 0.01]), 'names:'),   # not actuated
    (command(['shoulder'], [0.1]), 'names:'),
    (command(['shoulder', 'elbow'], [0.1]), 'names:'),
    (command(['shoulder', 'elbow'], [0.1, np.nan]), 'finite:'),
    (JointTrajectory(joint_names=['shoulder', 'elbow'], header=convert.header(NOW)),
     'names:'),                                                   # no trajectory point
])
def test_malformed_commands_are_refused_by_safetys_rules(gate, msg, rule):
    verdict = gate.check(msg, True, NOW)
    assert verdict.values is None and verdict.refused == 'commands_malformed'
    assert verdict.reason.startswith(rule)


@pytest.mark.parametrize('age_ns, stale', [
    (500 * MS, False), (500 * MS + 1, True), (-50 * MS, False), (-50 * MS - 1, True)])
def test_the_age_budget_and_future_tolerance_are_inclusive(gate, age_ns, stale):
    verdict = gate.check(command(['shoulder', 'elbow'], [0.3, -0.4], age_ns), True, NOW)
    assert (verdict.refused == 'commands_stale') == stale == (verdict.values is None)


def test_a_malformed_command_counts_as_malformed_even_when_stale(gate):
    msg = command(['shoulder', 'wrist'], [0.1, 0.2], age_ns=2_000 * MS)
    assert gate.check(msg, True, NOW).refused == 'commands_malformed'
