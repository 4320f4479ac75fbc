"""24-DoF hand: spec, URDF and MJCF agree; the twin tracks; valve and Baoding tasks behave."""

from __future__ import annotations

import math
import time

import mujoco
import numpy as np
import pytest
from conftest import urdf_root

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.robots.hand24.twin import (ASSETS, HandTwin, gymnasium_hand_dir, load_scene,
                                           mujoco_actuator_name, mujoco_joint_name, scene_xml)
from dexmpc_ros.robots.hand24.tasks import (BAODING_STATE_NAMES, VALVE_STATE_NAMES, BaodingTask,
                                            ValveTask, baoding_targets, reward_baoding,
                                            reward_valve, valve_angle_error)

FINGERS = ('FF', 'MF', 'RF', 'LF')
JOINT_ORDER = (['WRJ2', 'WRJ1', 'FFJ4', 'FFJ3', 'FFJ2', 'FFJ1', 'MFJ4', 'MFJ3', 'MFJ2', 'MFJ1',
                'RFJ4', 'RFJ3', 'RFJ2', 'RFJ1', 'LFJ5', 'LFJ4', 'LFJ3', 'LFJ2', 'LFJ1',
                'THJ5', 'THJ4', 'THJ3', 'THJ2', 'THJ1'])
DISTAL = ['FFJ1', 'MFJ1', 'RFJ1', 'LFJ1']
TIPS = {'fftip': 'robot0:S_fftip', 'lftip': 'robot0:S_lftip', 'thtip': 'robot0:S_thtip'}


@pytest.fixture(scope='module')
def spec():
    return load_robot_spec('hand24')


@pytest.fixture(scope='module')
def valve_twin(spec):
    twin = HandTwin('valve', seed=0, spec=spec)
    yield twin
    twin.close()


@pytest.fixture(scope='module')
def baoding_twin(spec):
    twin = HandTwin('baoding', seed=0, spec=spec)
    yield twin
    twin.close()


@pytest.fixture
def valve(valve_twin):
    valve_twin.reset(0)
    return valve_twin


@pytest.fixture
def baoding(baoding_twin):
    baoding_twin.reset(0)
    return baoding_twin


def hold(twin: HandTwin, command: np.ndarray, steps: int) -> None:
    for _ in range(steps):
        twin.apply_command(command)
        twin.step()


def ramp(twin: HandTwin, command: np.ndarray, joint: str, goal: float, steps: int) -> None:
    """Move one commanded joint linearly to ``goal`` over ``steps`` control steps."""
    index = twin.spec.command_names.index(joint)
    start = command[index]
    for k in range(1, steps + 1):
        command[index] = start + (goal - start) * k / steps
        twin.apply_command(command)
        twin.step()


# Spec -------------------------------------------------------------------------------------
def test_spec_has_24_shadow_joints_20_actuated(spec):
    assert spec.name == 'hand24' and spec.urdf == 'hand24.urdf'
    assert spec.command_interface == 'position' and spec.control_rate_hz == 10.0
    assert spec.joint_names == JOINT_ORDER
    assert [j.name for j in spec.joints if not j.actuated] == DISTAL
    assert spec.command_names == [n for n in JOINT_ORDER if n not in DISTAL]
    assert len(spec.command_names) == 20
    for joint, value in zip(spec.joints, spec.default_pose):
        assert joint.lower <= value <= joint.upper, joint.name
        assert joint.max_step == pytest.approx(0.2)
        assert joint.max_step <= joint.velocity * spec.period_s + 1e-12, joint.name
    pose = dict(zip(spec.joint_names, spec.default_pose))
    for finger in FINGERS:       # distal = middle: the free finger's tendon coupling
        assert pose[f'{finger}J1'] == pose[f'{finger}J2']
    assert pose['WRJ1'] < 0.15   # below PDDM's wrist penalty


def test_driver_section_maps_every_joint_to_the_real_hand(spec):
    names = spec.driver['joint_names']
    assert names == {n: f'rh_{n}' for n in JOINT_ORDER}
    assert spec.driver['coupled_joints'] == {f'rh_{f}J0': [f'{f}J1', f'{f}J2'] for f in FINGERS}


def test_mujoco_names_are_shifted_by_one():
    assert mujoco_joint_name('FFJ1') == 'robot0:FFJ0'
    assert mujoco_joint_name('FFJ4') == 'robot0:FFJ3'
    assert mujoco_joint_name('LFJ5') == 'robot0:LFJ4'
    assert mujoco_joint_name('THJ5') == 'robot0:THJ4'
    assert mujoco_joint_name('WRJ2') == 'robot0:WRJ1'
    assert mujoco_actuator_name('MFJ2') == 'robot0:A_MFJ1'
    with pytest.raises(ValueError, match='Shadow joint'):
        mujoco_joint_name('FFJ0')


# MJCF <-> YAML ----------------------------------------------------------------------------
def test_gymnasium_hand_is_included_in_place_not_copied():
    hand = gymnasium_hand_dir()
    assert hand.parts[-4:] == ('gymnasium_robotics', 'envs', 'assets', 'hand')
    for task in ('valve', 'baoding'):
        text = scene_xml(task)
        assert f'file="{hand.as_posix()}/robot.xml"' in text
        assert '$' not in text
    assert not list(ASSETS.glob('*.stl'))
    assert not (ASSETS / 'robot.xml').exists() and not (ASSETS / 'shared.xml').exists()


@pytest.mark.parametrize('task', ['valve', 'baoding'])
def test_mjcf_ranges_and_actuators_equal_yaml(spec, task):
    model = load_scene(task)
    for joint in spec.joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, mujoco_joint_name(joint.name))
        assert jid >= 0 and model.jnt_limited[jid], joint.name
        np.testing.assert_array_equal(model.jnt_range[jid], [joint.lower, joint.upper])
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR,
                                mujoco_actuator_name(joint.name))
        assert (aid >= 0) == joint.actuated, joint.name
        if joint.actuated:
            assert model.actuator_trnid[aid, 0] == jid
            np.testing.assert_array_equal(model.actuator_ctrlrange[aid],
                                          [joint.lower, joint.upper])
    # gymnasium's actuator order is our command order
    assert [model.actuator(i).name for i in range(model.nu)] == [
        mujoco_actuator_name(n) for n in spec.command_names]
    substeps = spec.period_s / model.opt.timestep
    assert substeps == pytest.approx(round(substeps)) and round(substeps) == 50
    assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, 'scene') >= 0


# URDF <-> YAML ----------------------------------------------------------------------------
def test_urdf_joints_and_limits_equal_yaml(spec):
    root = urdf_root(spec)
    movable = {j.get('name'): j for j in root.findall('joint') if j.get('type') != 'fixed'}
    assert sorted(movable) == sorted(spec.joint_names)
    for joint in spec.joints:
        element = movable[joint.name]
        assert element.get('type') == 'revolute', joint.name
        limit = element.find('limit')
        for attr in ('lower', 'upper', 'velocity', 'effort'):
            assert float(limit.get(attr)) == getattr(joint, attr), (joint.name, attr)
        mimic = element.find('mimic')
        assert (mimic is None) == joint.actuated, joint.name
        if mimic is not None:
            assert mimic.get('joint') == joint.name[:-1] + '2'
            assert float(mimic.get('multiplier')) == 1.0


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


def _urdf_tip_position(root, tip: str, q: dict[str, float]) -> np.ndarray:
    """Forward kinematics of the URDF from the forearm link to ``tip`` [m]."""
    by_child = {j.find('child').get('link'): j for j in root.findall('joint')}
    chain, link = [], tip
    while link in by_child:
        chain.append(by_child[link])
        link = by_child[link].find('parent').get('link')
    assert link == 'forearm'
    rotation, position = np.eye(3), np.zeros(3)
    for joint in reversed(chain):
        origin = joint.find('origin')
        xyz = np.array([float(v) for v in origin.get('xyz').split()])
        roll, pitch, yaw = (float(v) for v in origin.get('rpy').split())
        position = position + rotation @ xyz
        rotation = rotation @ (_rotation(np.array([0., 0, 1]), yaw)
                               @ _rotation(np.array([0., 1, 0]), pitch)
                               @ _rotation(np.array([1., 0, 0]), roll))
        if joint.get('type') == 'revolute':
            axis = np.array([float(v) for v in joint.find('axis').get('xyz').split()])
            rotation = rotation @ _rotation(axis, q[joint.get('name')])
    return position


def test_urdf_kinematics_reproduce_mjcf_fingertips(spec, valve):
    root = urdf_root(spec)
    forearm = valve.model.body('robot0:forearm').id
    rng = np.random.default_rng(3)
    lower = spec.limits_array('lower', actuated_only=False)
    upper = spec.limits_array('upper', actuated_only=False)
    for q in rng.uniform(lower, upper, (5, len(spec.joints))):
        valve.data.qpos[valve.qpos_adr] = q
        mujoco.mj_kinematics(valve.model, valve.data)
        frame_rot = valve.data.xmat[forearm].reshape(3, 3)
        for tip, site in TIPS.items():
            mj_tip = frame_rot.T @ (valve.data.site(site).xpos - valve.data.xpos[forearm])
            urdf_tip = _urdf_tip_position(root, tip, dict(zip(spec.joint_names, q)))
            np.testing.assert_allclose(urdf_tip, mj_tip, atol=1e-6, err_msg=tip)


# Twin behaviour ---------------------------------------------------------------------------
def test_make_twin_builds_hand_and_rejects_bad_tasks(spec):
    assert isinstance(make_twin('hand24', spec=spec, task='baoding', seed=1), HandTwin)
    with pytest.raises(ValueError, match='valve, baoding'):
        HandTwin(task='juggle', spec=spec)
    with pytest.raises(ValueError, match='target_low'):
        HandTwin(task='valve', spec=spec, period_steps=60)
    with pytest.raises(ValueError, match='target_high'):
        ValveTask(target_low=2.0, target_high=1.0)
    with pytest.raises(ValueError, match='period_steps'):
        BaodingTask(period_steps=0)


def test_apply_command_rejects_bad_shapes_and_nan(valve):
    with pytest.raises(ValueError, match='shape'):
        valve.apply_command(np.zeros(24))
    with pytest.raises(ValueError, match='non-finite'):
        valve.apply_command(np.r_[np.zeros(19), np.nan])


def test_reset_restores_default_pose_at_rest(valve, spec):
    hold(valve, spec.limits_array('upper'), 5)
    valve.reset(1)
    reading = valve.joints()
    np.testing.assert_array_equal(reading.position, spec.default_pose)
    np.testing.assert_array_equal(reading.velocity, 0.0)
    assert valve.steps == 0


def test_twin_tracks_commanded_targets(valve, spec):
    goal = dict(zip(spec.command_names, spec.default_command))
    goal.update(WRJ2=-0.35, WRJ1=-0.3, FFJ4=0.2, FFJ3=0.3, FFJ2=0.9, MFJ3=0.2, RFJ2=1.2,
                LFJ5=0.2, LFJ4=-0.2, THJ5=0.5, THJ4=0.6, THJ3=0.1, THJ2=-0.3, THJ1=-0.8)
    goal = np.array([goal[n] for n in spec.command_names])
    command = spec.default_command.copy()
    while np.any(command != goal):        # as the supervisor lets it through: max_step
        command = command + np.clip(goal - command, -0.2, 0.2)
        valve.apply_command(command)
        valve.step()
    hold(valve, goal, 10)      # 1 s: the J2 servos drag the distal joints along
    reading = valve.joints()
    np.testing.assert_allclose(reading.position[spec.actuated_index], goal, atol=0.01)
    assert np.abs(reading.velocity).max() < 0.05


def test_joints_stay_within_limits_when_commanded_beyond(valve, spec):
    lower = spec.limits_array('lower', actuated_only=False)
    upper = spec.limits_array('upper', actuated_only=False)
    for command in (spec.limits_array('upper') + 1.0, spec.limits_array('lower') - 1.0):
        valve.reset(0)
        for _ in range(15):
            valve.apply_command(command)
            valve.step()
            position = valve.joints().position
            assert np.all(position >= lower - 0.02) and np.all(position <= upper + 0.02)
        ctrl = valve.data.ctrl[:20]
        np.testing.assert_array_equal(ctrl, np.clip(command, spec.limits_array('lower'),
                                                    spec.limits_array('upper')))
        wrist = valve.joints().position[:2]       # free of contacts: reaches its ends
        np.testing.assert_allclose(wrist, command[:2].clip(lower[:2], upper[:2]), atol=0.02)


def test_distal_joint_follows_middle_joint_through_the_tendon(valve, spec):
    index = {n: i for i, n in enumerate(spec.joint_names)}
    command = spec.default_command.copy()
    command[spec.command_names.index('WRJ1')] = -0.4      # fingers clear of the valve
    command[spec.command_names.index('LFJ5')] = 0.0       # and of one another
    for middle in (1.3, 0.1, 0.8):
        for finger in FINGERS:
            command[spec.command_names.index(f'{finger}J2')] = middle
        hold(valve, command, 15)      # the J2 servo drags the distal joint: about 1.5 s
        position = valve.joints().position
        for finger in FINGERS:
            j1, j2 = position[index[f'{finger}J1']], position[index[f'{finger}J2']]
            assert j2 == pytest.approx(middle, abs=0.02), finger
            # fixed tendon robot0:T_xxJ1c: 0.00705 J1 - 0.00805 J2 within +-0.001 m
            assert abs(0.00705 * j1 - 0.00805 * j2) <= 0.001 + 1e-4, (finger, j1, j2)


# Valve ------------------------------------------------------------------------------------
def test_reward_valve_analytic_values():
    errors = np.array([[0.0, 0.05, 0.1], [0.2, 0.25, -1.0]])
    np.testing.assert_allclose(reward_valve(errors), [[11.0, 10.5, 0.0], [-1.0, -2.5, -10.0]])
    np.testing.assert_allclose(valve_angle_error([3 * np.pi / 2, 0.3 + 4 * np.pi], [0.0, 0.3]),
                               [-np.pi / 2, 0.0], atol=1e-12)
    assert reward_valve(0.0).shape == ()


def test_valve_task_state_targets_and_reward(valve):
    names, values = valve.task_state()
    assert names == VALVE_STATE_NAMES and values.shape == (4,)
    assert values[0] == 0.0 and values[2] == valve.target_angle
    assert values[3] == pytest.approx(-valve.target_angle)
    assert valve.reward() == pytest.approx(float(reward_valve(valve.target_angle)))
    targets = []
    for seed in range(40):
        valve.reset(seed)
        targets.append(valve.target_angle)
    magnitudes = np.abs(targets)
    assert magnitudes.min() >= np.pi / 8 and magnitudes.max() <= np.pi / 4
    assert min(targets) < 0 < max(targets)
    valve.data.qpos[valve.model.joint('valve_angle').qposadr[0]] = valve.target_angle + 2 * np.pi
    assert valve.task_state()[1][3] == pytest.approx(0.0, abs=1e-9)
    assert valve.reward() == pytest.approx(11.0)
    assert not valve.done()


def test_valve_target_range_is_an_option(spec):
    twin = HandTwin('valve', seed=4, spec=spec, target_low=np.pi / 2, target_high=np.pi)
    assert np.pi / 2 <= abs(twin.target_angle) <= np.pi


def test_reset_with_same_seed_gives_same_target(valve, spec):
    valve.reset(7)
    first = valve.target_angle
    valve.reset(8)
    assert valve.target_angle != first
    valve.reset(7)
    assert valve.target_angle == first
    assert HandTwin('valve', seed=7, spec=spec).target_angle == first


@pytest.mark.parametrize('sweep_to, sign', [(-0.489, 1.0), (0.14, -1.0)])
def test_scripted_stroke_turns_the_valve(valve, sweep_to, sign):
    command = valve.spec.default_command.copy()
    hold(valve, command, 5)
    assert valve.task_state()[1][0] == pytest.approx(0.0, abs=1e-3)   # hovering, no contact
    ramp(valve, command, 'WRJ2', sweep_to, 6)                          # sweep in the air
    assert valve.task_state()[1][0] == pytest.approx(0.0, abs=1e-3)
    ramp(valve, command, 'WRJ2', -0.175, 6)
    ramp(valve, command, 'WRJ1', 0.2, 3)                               # dip beside the spoke
    ramp(valve, command, 'WRJ2', sweep_to, 8)                          # and sweep
    hold(valve, command, 3)
    angle = valve.task_state()[1][0]
    assert sign * angle > 0.5, f'valve turned only {angle:.3f} rad'


# Baoding ----------------------------------------------------------------------------------
def test_reward_baoding_analytic_values():
    target1, target2 = np.array([0.01, 0.02]), np.array([-0.01, 0.0])
    on1, on2 = np.r_[target1, 0.24], np.r_[target2, 0.24]
    assert reward_baoding(on1, on2, target1, target2, 0.0, 0.15) == pytest.approx(0.0)
    off1 = on1 + [0.03, 0.04, 0.0]                  # 5 cm off -> -0.25
    assert reward_baoding(off1, on2, target1, target2, 0.0, 0.15) == pytest.approx(-0.25)
    assert reward_baoding(on1, on2, target1, target2, 0.2, 0.15) == pytest.approx(-10.0)
    low2 = on2 - [0.0, 0.0, 0.1]
    assert reward_baoding(on1, low2, target1, target2, 0.0, 0.15) == pytest.approx(-500.0)
    batch = np.broadcast_to(on1, (4, 7, 3))
    wrist = np.zeros((4, 7))
    wrist[1, 2] = 0.3
    rewards = reward_baoding(batch, batch, target1, target1, wrist, 0.15)
    assert rewards.shape == (4, 7)
    assert rewards[1, 2] == pytest.approx(-10.0) and rewards[0, 0] == pytest.approx(0.0)


def test_targets_move_counter_clockwise_with_period_60():
    task = BaodingTask()
    steps = np.arange(61)
    target1, target2 = task.targets(steps)
    np.testing.assert_allclose(target1[60], target1[0], atol=1e-12)
    np.testing.assert_allclose((target1 + target2) / 2, np.broadcast_to(task.center, (61, 2)),
                               atol=1e-12)                          # half a lap apart
    unit = (target1 - task.center) / [task.x_radius, task.y_radius]
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)   # on the ellipse
    cross = unit[:-1, 0] * unit[1:, 1] - unit[:-1, 1] * unit[1:, 0]
    np.testing.assert_allclose(cross, np.sin(2 * np.pi / 60))       # +6 deg per step: CCW
    start = np.array([np.cos(3 * np.pi / 4), np.sin(3 * np.pi / 4)])
    np.testing.assert_allclose(unit[0], start, atol=1e-12)
    clockwise, _ = baoding_targets(1, 60, task.center, (0.02, 0.036), (0.0, np.pi), False)
    assert clockwise[1] < task.center[1]


def test_baoding_task_state_follows_the_targets(baoding):
    names, values = baoding.task_state()
    assert names == BAODING_STATE_NAMES and values.shape == (10,)
    hold(baoding, baoding.spec.default_command, 15)
    target1, target2 = baoding.task.targets(15)
    np.testing.assert_allclose(baoding.task_state()[1][6:], np.r_[target1, target2])
    ball1, ball2 = baoding.ball_positions()
    np.testing.assert_allclose(baoding.task_state()[1][:6], np.r_[ball1, ball2])
    expected = reward_baoding(ball1, ball2, target1, target2, 0.0, baoding.drop_z)
    assert baoding.reward() == pytest.approx(float(expected), abs=1e-3)


def test_balls_stay_in_the_palm_for_2s_at_the_default_pose(baoding):
    start = np.concatenate(baoding.ball_positions())
    for _ in range(20):
        baoding.apply_command(baoding.spec.default_command)
        baoding.step()
        assert not baoding.done()
        assert baoding.reward() > -1.0           # no drop, no wrist penalty
    end = np.concatenate(baoding.ball_positions())
    assert np.abs(end - start).max() < 0.01      # resting, not rolling away
    assert min(end[2], end[5]) > baoding.drop_z + 0.05


def test_ball_below_threshold_is_a_drop(baoding):
    assert not baoding.done()
    adr = baoding.model.joint('ball2').qposadr[0]
    baoding.data.qpos[adr + 2] = baoding.drop_z - 0.01
    assert baoding.done()
    assert baoding.reward() < -500.0
    assert baoding.drop_z == pytest.approx(0.2 - BaodingTask().drop_depth, abs=2e-3)


def test_baoding_reset_is_deterministic(baoding):
    hold(baoding, baoding.spec.default_command, 5)
    after_five = baoding.task_state()[1]
    baoding.reset(3)
    first = baoding.task_state()[1]
    hold(baoding, baoding.spec.default_command, 5)
    np.testing.assert_array_equal(baoding.task_state()[1], after_five)
    baoding.reset(9)
    np.testing.assert_array_equal(baoding.task_state()[1], first)


def test_time_is_monotonic_across_resets(valve):
    hold(valve, valve.spec.default_command, 3)
    before = valve.time
    valve.reset(1)
    valve.step()
    assert valve.time == pytest.approx(before + valve.dt)


@pytest.mark.parametrize('task', ['valve', 'baoding'])
def test_render_gives_rgb_image(spec, task):
    twin = HandTwin(task, seed=0, spec=spec)
    try:
        image = twin.render(320, 240)
        if image is None:
            pytest.skip('no offscreen GL backend (set MUJOCO_GL=egl or osmesa)')
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert image.std() > 5.0
    finally:
        twin.close()


@pytest.mark.parametrize('fixture', ['valve', 'baoding'])
def test_control_step_takes_a_few_ms(fixture, request):
    twin = request.getfixturevalue(fixture)
    twin.step()
    start = time.process_time()
    for _ in range(50):
        twin.apply_command(twin.spec.default_command)
        twin.step()
    per_step = (time.process_time() - start) / 50
    assert per_step < 4e-3, f'{per_step * 1e3:.2f} ms of CPU per 0.1 s control step'
