"""
The Shadow hand's client side: name map, coupled J0 = J1 + J2, missing joints, watchdog.

Controller joint lists are the real ones: Shadow's ``rh_trajectory_controller`` (all 24
``rh_*`` joints, hardware.md §3.2), its 20 position controllers (virtual J0 for the coupled
fingers, §3.1) and our simulated system's controllers YAML.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dexmpc_ros.core.robot_spec import config_dir, load_robot_spec
from dexmpc_ros.core.yaml_io import load_yaml_mapping
from dexmpc_ros.robots.hand24.driver import (SILENT_CONTROLLER, HandJointMap, MissingJointError,
                                             ShadowHandConfig, StateWatchdog, controller_joints)
from dexmpc_ros.robots.hand24.twin import mujoco_joint_name

SPEC = load_robot_spec('hand24')
FINGERS = ('FF', 'MF', 'RF', 'LF')
# Shadow's trajectory controller: J1 and J2 separately, all 24 joints.
TRAJECTORY_JOINTS = [f'rh_{f}J{i}' for f in FINGERS for i in (1, 2, 3, 4)] + \
    ['rh_LFJ5'] + [f'rh_THJ{i}' for i in range(1, 6)] + ['rh_WRJ1', 'rh_WRJ2']
# Shadow's 20 position controllers (sh_rh_<joint>_position_controller): virtual J0.
POSITION_JOINTS = ['rh_WRJ1', 'rh_WRJ2'] + [f'rh_{f}J{i}' for f in FINGERS for i in (0, 3, 4)] \
    + ['rh_LFJ5'] + [f'rh_THJ{i}' for i in range(1, 6)]


@pytest.fixture(scope='module')
def hand_map() -> HandJointMap:
    return HandJointMap.from_spec(SPEC)


def test_map_covers_the_twins_24_joints_with_rh_names(hand_map):
    assert len(hand_map.twin_names) == 24 and len(hand_map.command_names) == 20
    assert set(hand_map.hardware_names) == set(SPEC.joint_names)
    assert sorted(hand_map.hardware_names.values()) == sorted(TRAJECTORY_JOINTS)
    assert all(hw == f'rh_{twin}' for twin, hw in hand_map.hardware_names.items())
    for twin in hand_map.twin_names:         # every spec joint is a twin (MuJoCo) joint
        assert mujoco_joint_name(twin).startswith('robot0:')


def test_joint_states_in_any_order_come_back_in_twin_order(hand_map):
    rng = np.random.default_rng(1)
    twin_q = rng.uniform(-1, 1, 24)
    order = rng.permutation(24)
    names = [hand_map.hardware_names[hand_map.twin_names[i]] for i in order]
    state = hand_map.twin_state(names, twin_q[order], 2 * twin_q[order], [], stamp=5.0)
    assert state.names == tuple(SPEC.joint_names)
    np.testing.assert_array_equal(state.position, twin_q)
    np.testing.assert_array_equal(state.velocity, 2 * twin_q)
    assert np.all(np.isnan(state.effort)) and state.stamp == 5.0


def test_round_trip_through_the_trajectory_controller(hand_map):
    command = np.linspace(0.05, 1.0, 20)
    names, positions, t = hand_map.trajectory_point(command, TRAJECTORY_JOINTS, 0.1)
    assert names == TRAJECTORY_JOINTS and t == 0.1
    state = hand_map.twin_state(names, positions)       # the hand reached its targets
    np.testing.assert_array_equal(state.position[SPEC.actuated_index], command)
    for finger in FINGERS:                              # passive J1 was sent J2's target
        sent = dict(zip(names, positions))
        assert sent[f'rh_{finger}J1'] == sent[f'rh_{finger}J2']
        i1, i2 = SPEC.joint_names.index(f'{finger}J1'), SPEC.joint_names.index(f'{finger}J2')
        assert state.position[i1] == state.position[i2]


def test_position_controllers_get_j0_as_twice_j2(hand_map):
    command = np.linspace(0.05, 1.0, 20)
    target = dict(zip(SPEC.command_names, command))
    sent = dict(zip(POSITION_JOINTS, hand_map.command_values(command, POSITION_JOINTS)))
    assert len(sent) == 20
    for finger in FINGERS:
        assert sent[f'rh_{finger}J0'] == pytest.approx(2 * target[f'{finger}J2'])
        assert sent[f'rh_{finger}J3'] == target[f'{finger}J3']
    assert sent['rh_THJ1'] == target['THJ1'] and sent['rh_WRJ2'] == target['WRJ2']


def test_state_with_only_j0_splits_it_evenly(hand_map):
    coupled = {f'rh_{f}J{i}' for f in FINGERS for i in (1, 2)}
    names = [n for n in TRAJECTORY_JOINTS if n not in coupled] + [f'rh_{f}J0' for f in FINGERS]
    position = np.arange(len(names), dtype=float) / 10
    state = hand_map.twin_state(names, position, position)
    for finger in FINGERS:
        j0 = position[names.index(f'rh_{finger}J0')]
        for joint in (f'{finger}J1', f'{finger}J2'):
            k = SPEC.joint_names.index(joint)
            assert state.position[k] == pytest.approx(j0 / 2)
            assert state.velocity[k] == pytest.approx(j0 / 2)
            assert np.isnan(state.effort[k])


def test_simulated_controllers_take_spec_names_unchanged(hand_map):
    data = load_yaml_mapping(config_dir() / 'controllers' / 'hand24_controllers.yaml')
    joints = controller_joints(data, 'forward_position_controller')
    command = np.linspace(-0.1, 0.9, 20)
    assert hand_map.command_values(command, joints) == command.tolist()
    with pytest.raises(ValueError, match='arm_controller.ros__parameters.joints'):
        controller_joints(data, 'arm_controller')


def test_missing_joint_in_joint_states_is_named(hand_map):
    names = [n for n in TRAJECTORY_JOINTS if n != 'rh_THJ3']
    with pytest.raises(MissingJointError, match='lacks rh_THJ3 .spec joint THJ3.') as info:
        hand_map.twin_state(names, np.zeros(23))
    assert 'prefix' in info.value.hint
    left = [n.replace('rh_', 'lh_') for n in TRAJECTORY_JOINTS]     # the wrong hand
    with pytest.raises(MissingJointError):
        hand_map.twin_state(left, np.zeros(24))


def test_bad_inputs_are_refused_with_names(hand_map):
    with pytest.raises(ValueError, match="'rh_FFJ9'"):
        hand_map.command_values(np.zeros(20), ['rh_FFJ9'])
    with pytest.raises(ValueError, match=r'shape \(20,\)'):
        hand_map.command_values(np.zeros(24), TRAJECTORY_JOINTS)
    with pytest.raises(ValueError, match='3 velocity values for 24 names'):
        hand_map.twin_state(TRAJECTORY_JOINTS, np.zeros(24), np.zeros(3))


def test_joint_sign_flips_command_and_state():
    driver = {**SPEC.driver, 'joint_signs': {'THJ1': -1.0}}
    flipped = HandJointMap.from_spec(dataclasses.replace(SPEC, driver=driver))
    command = np.full(20, 0.3)
    sent = dict(zip(TRAJECTORY_JOINTS, flipped.command_values(command, TRAJECTORY_JOINTS)))
    assert sent['rh_THJ1'] == -0.3 and sent['rh_THJ2'] == 0.3
    state = flipped.twin_state(TRAJECTORY_JOINTS, [sent[n] for n in TRAJECTORY_JOINTS])
    np.testing.assert_allclose(state.position[SPEC.actuated_index], command)


@pytest.mark.parametrize('change, message', [
    (lambda d: d['joint_names'].pop('LFJ5'), "spec joints \\['LFJ5'\\]"),
    (lambda d: d['joint_names'].update(FFJ3='rh_FFJ4'), 'duplicate hand names'),
    (lambda d: d['coupled_joints'].update(rh_FFJ0=['FFJ2', 'FFJ1']), 'must be passive'),
    (lambda d: d['coupled_joints'].pop('rh_LFJ0'), "passive joints \\['LFJ1'\\]"),
    (lambda d: d.update(joint_signs={'THJ1': 2.0}), "sign of 'THJ1'"),
    (lambda d: d.pop('joint_names'), 'missing joint_names'),
])
def test_bad_driver_section_is_refused(change, message):
    driver = {key: (dict(value) if isinstance(value, dict) else value)
              for key, value in SPEC.driver.items()}
    change(driver)
    with pytest.raises(ValueError, match=message):
        HandJointMap.from_spec(dataclasses.replace(SPEC, driver=driver))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_trips_once_and_recovers():
    clock = FakeClock()
    dog = StateWatchdog(0.5, clock)
    clock.now += 0.4
    assert dog.check().silent is False                  # within the timeout from start
    clock.now += 0.2
    assert dog.check().event is None                    # 0.6 s: overdue, once
    clock.now += 0.1
    status = dog.check()                                # overdue twice in a row: silent
    assert (status.silent, status.event, status.fault) == (True, 'tripped', SILENT_CONTROLLER)
    assert status.age_s == pytest.approx(0.7)
    clock.now += 1.0
    assert dog.check().event is None and dog.check().silent   # one trip, one e-stop request
    dog.feed()
    status = dog.check()
    assert (status.silent, status.event, status.fault) == (False, 'recovered', '')
    for _ in range(5):                                  # fed every 0.1 s: stays healthy
        clock.now += 0.1
        dog.feed()
        assert dog.check() == dataclasses.replace(status, event=None, age_s=0.0)
    clock.now += 0.51
    assert dog.check().event is None
    assert dog.check().event == 'tripped'


def test_watchdog_ignores_a_stall_of_its_own_executor():
    """States queued behind a stalled executor are taken after the first late check."""
    clock = FakeClock()
    dog = StateWatchdog(0.3, clock)
    dog.feed()
    clock.now += 0.8             # the node stalled; the hand kept publishing meanwhile
    assert dog.check().event is None
    dog.feed()                   # the queued states
    for _ in range(5):
        clock.now += 0.05
        dog.feed()
        assert dog.check().event is None and not dog.check().silent


@pytest.mark.parametrize('kwargs, field', [
    ({'command_mode': 'effort'}, 'command_mode'), ({'state_timeout_s': 0.0}, 'state_timeout_s'),
    ({'controller': ''}, 'controller'), ({'point_time_s': float('nan')}, 'point_time_s')])
def test_config_rejects_bad_values_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ShadowHandConfig(**kwargs)
    with pytest.raises(ValueError, match='timeout_s'):
        StateWatchdog(-1.0)
