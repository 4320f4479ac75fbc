"""WidowX (wx250s): spec, URDF, MJCF and kinematics agree; the twin tracks, holds and rewards."""

from __future__ import annotations

import time

import mujoco
import numpy as np
import pytest
from conftest import urdf_root

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.widowx.kinematics import (WX250S_JOINTS, WX250S_M, wx250s_ee_position,
                                                 wx250s_fk)
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.robots.widowx.twin import (MJCF, TASK_STATE_NAMES, ReachTask, WidowXTwin,
                                           reach_reward)

ARM_JOINTS = list(WX250S_JOINTS)


@pytest.fixture(scope='module')
def spec():
    return load_robot_spec('widowx')


@pytest.fixture
def twin(spec):
    twin = WidowXTwin(seed=0, spec=spec)
    yield twin
    twin.close()


def settle(twin: WidowXTwin, command: np.ndarray, steps: int) -> None:
    twin.apply_command(command)
    for _ in range(steps):
        twin.step()


def walk_to(twin: WidowXTwin, goal: np.ndarray, max_step: np.ndarray) -> None:
    """Command ``goal`` the way the supervisor lets it through: max_step per period."""
    command = twin.joints().position[twin.spec.actuated_index]
    while np.any(command != goal):
        command = command + np.clip(goal - command, -max_step, max_step)
        twin.apply_command(command)
        twin.step()


# Spec -----------------------------------------------------------------------------------
def test_spec_loads_with_arm_then_fingers(spec):
    assert spec.name == 'widowx'
    assert spec.urdf == 'wx250s.urdf'
    assert spec.command_interface == 'position'
    assert spec.control_rate_hz == 20.0
    assert spec.joint_names == ARM_JOINTS + ['left_finger', 'right_finger']
    assert spec.command_names == ARM_JOINTS + ['left_finger']
    shoulder = spec.joints[1]
    assert (shoulder.lower, shoulder.upper) == pytest.approx(np.radians([-108.0, 114.0]),
                                                             abs=1e-6)
    left, right = spec.joints[6], spec.joints[7]
    assert (right.lower, right.upper) == (-left.upper, -left.lower)
    assert spec.default_pose[7] == -spec.default_pose[6]
    assert spec.driver['port'] == '/dev/ttyDXL'
    assert spec.driver['baud'] == 1_000_000
    assert spec.driver['servo_ids']['gripper'] == 9


# Kinematics -----------------------------------------------------------------------------
def test_fk_at_zero_is_home_pose_m():
    np.testing.assert_allclose(wx250s_fk(np.zeros(6)), WX250S_M, atol=1e-12)


def test_fk_analytic_rotations():
    # Waist +90 deg swings the gripper onto the +y axis.
    np.testing.assert_allclose(wx250s_ee_position([np.pi / 2, 0, 0, 0, 0, 0]),
                               [0.0, 0.458325, 0.36065], atol=1e-12)
    # Shoulder +90 deg tips the arm forward about the shoulder axis at z = 0.11065 m:
    # the EE (0.458325, 0.36065) relative to the axis becomes (0.25, -0.458325).
    np.testing.assert_allclose(wx250s_ee_position([0, np.pi / 2, 0, 0, 0, 0]),
                               [0.25, 0.0, 0.11065 - 0.458325], atol=1e-12)
    # Rolls about the tool axis leave the EE where it is.
    np.testing.assert_allclose(wx250s_ee_position([0, 0, 0, 1.0, 0, -2.0]),
                               [0.458325, 0.0, 0.36065], atol=1e-12)


def test_fk_is_batched_and_rejects_wrong_width():
    q = np.random.default_rng(0).uniform(-1, 1, (5, 3, 6))
    poses = wx250s_fk(q)
    assert poses.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(poses[2, 1], wx250s_fk(q[2, 1]), atol=1e-12)
    rotations = poses[..., :3, :3]
    np.testing.assert_allclose(rotations @ np.swapaxes(rotations, -1, -2),
                               np.broadcast_to(np.eye(3), rotations.shape), atol=1e-12)
    with pytest.raises(ValueError, match='6'):
        wx250s_fk(np.zeros(7))


def test_mjcf_ee_at_zero_pose_matches_m(twin):
    twin.data.qpos[:] = twin.model.qpos0
    mujoco.mj_kinematics(twin.model, twin.data)
    np.testing.assert_allclose(twin.ee_position(), WX250S_M[:3, 3], atol=1e-3)
    site = mujoco.mj_name2id(twin.model, mujoco.mjtObj.mjOBJ_SITE, 'ee')
    np.testing.assert_allclose(twin.data.site_xmat[site].reshape(3, 3), np.eye(3), atol=1e-9)


def test_fk_matches_mujoco_over_random_poses(twin, spec):
    rng = np.random.default_rng(7)
    lower, upper = spec.limits_array('lower')[:6], spec.limits_array('upper')[:6]
    samples = rng.uniform(lower, upper, (30, 6))
    site = mujoco.mj_name2id(twin.model, mujoco.mjtObj.mjOBJ_SITE, 'ee')
    for q, pose in zip(samples, wx250s_fk(samples)):
        twin.data.qpos[twin.qpos_adr[:6]] = q
        mujoco.mj_kinematics(twin.model, twin.data)
        assert np.linalg.norm(twin.ee_position() - pose[:3, 3]) <= 2e-3, q
        np.testing.assert_allclose(twin.data.site_xmat[site].reshape(3, 3), pose[:3, :3],
                                   atol=1e-6)


# Twin behaviour -------------------------------------------------------------------------
def test_make_twin_builds_widowx_and_rejects_unknown_task(spec):
    assert isinstance(make_twin('widowx', spec=spec, task='reach', seed=1), WidowXTwin)
    with pytest.raises(ValueError, match='reach'):
        WidowXTwin(task='juggle', spec=spec)


def test_apply_command_rejects_bad_shapes_and_nan(twin):
    with pytest.raises(ValueError, match='shape'):
        twin.apply_command(np.zeros(8))
    with pytest.raises(ValueError, match='non-finite'):
        twin.apply_command(np.r_[np.zeros(6), np.nan])


def test_twin_tracks_a_joint_target(twin, spec):
    goal = np.array([0.6, -0.3, 0.4, -0.5, 0.7, 1.0, 0.02])
    walk_to(twin, goal, spec.limits_array('max_step'))
    settle(twin, goal, 10)     # 0.5 s
    reading = twin.joints()
    np.testing.assert_allclose(reading.position[:7], goal, atol=0.01)
    assert np.abs(reading.velocity[:6]).max() < 0.05


def test_joints_stay_within_limits_when_commanded_beyond(twin, spec):
    lower = spec.limits_array('lower', actuated_only=False)
    upper = spec.limits_array('upper', actuated_only=False)
    speed_limit = spec.limits_array('velocity', actuated_only=False)
    # One jump (no supervisor in between): waist and wrists past their ends, fingers too.
    command = np.array([4.0, -0.5, 0.5, 4.0, -2.5, -4.0, 0.05])
    for _ in range(40):
        twin.apply_command(command)
        twin.step()
        reading = twin.joints()
        assert np.all(reading.position >= lower - 1e-3)
        assert np.all(reading.position <= upper + 1e-3)
        # The setpoint slews at the servo velocity limit, so the joints do not fly.
        assert np.all(np.abs(reading.velocity) <= 1.2 * speed_limit)
    position = twin.joints().position
    assert position[0] == pytest.approx(upper[0], abs=0.02)      # clamped at the waist end
    assert position[4] == pytest.approx(lower[4], abs=0.02)


@pytest.mark.parametrize('pose', [None, [0.3, 0.5, -0.2, 0.0, 0.6, 0.0, 0.03]])
def test_gravity_hold_without_sag(twin, spec, pose):
    if pose is not None:
        walk_to(twin, np.array(pose), spec.limits_array('max_step'))
        settle(twin, np.array(pose), 20)
    start = twin.joints().position.copy()
    command = spec.default_command if pose is None else np.array(pose)
    settle(twin, command, int(round(2.0 / twin.dt)))     # 2 s
    assert np.abs(twin.joints().position - start).max() < 2e-3


def test_reset_restores_default_pose_and_seeds_targets(twin, spec):
    settle(twin, np.array([0.8, -0.4, 0.3, 0.5, 0.5, 0.5, 0.02]), 20)
    twin.reset(3)
    np.testing.assert_allclose(twin.joints().position, spec.default_pose, atol=1e-12)
    np.testing.assert_allclose(twin.joints().velocity, 0.0, atol=1e-12)
    target_3, cube_3 = twin.target, twin.task_state()[1][6:]
    twin.reset(4)
    assert np.linalg.norm(twin.target - target_3) > 1e-3
    twin.reset(3)
    np.testing.assert_array_equal(twin.target, target_3)
    np.testing.assert_array_equal(twin.task_state()[1][6:], cube_3)
    task = ReachTask()
    for seed in range(20):
        twin.reset(seed)
        assert np.all(twin.target >= task.target_low) and np.all(twin.target <= task.target_high)
    np.testing.assert_array_equal(WidowXTwin(seed=3, spec=spec).target, target_3)
    unseeded = [WidowXTwin(seed=None, spec=spec).target for _ in range(2)]
    assert np.linalg.norm(unseeded[0] - unseeded[1]) > 1e-6


def test_time_is_monotonic_across_resets(twin):
    settle(twin, twin.spec.default_command, 4)
    before = twin.time
    twin.reset(1)
    twin.step()
    assert twin.time == pytest.approx(before + twin.dt)


def test_task_state_names_and_values(twin):
    names, values = twin.task_state()
    assert names == TASK_STATE_NAMES
    assert values.shape == (9,)
    np.testing.assert_allclose(values[:3], twin.ee_position())
    np.testing.assert_allclose(values[3:6], twin.target)
    settle(twin, twin.spec.default_command, 10)
    cube = twin.task_state()[1][6:]
    assert cube[2] == pytest.approx(0.02, abs=2e-3)        # resting on the table
    assert twin.reward() == pytest.approx(-np.linalg.norm(values[:3] - values[3:6]), abs=1e-3)


def test_reach_reward_is_vectorized_negative_distance():
    ee = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(reach_reward(ee, np.zeros(3)), [0.0, -5.0, -np.sqrt(3)])
    batch = np.zeros((4, 10, 3))
    assert reach_reward(batch, np.ones(3)).shape == (4, 10)


def test_reach_task_validates_boxes():
    with pytest.raises(ValueError, match='target_low'):
        ReachTask(target_low=(0.5, 0.0, 0.1), target_high=(0.4, 0.1, 0.2))
    with pytest.raises(ValueError, match='above the table'):
        ReachTask(target_low=(0.2, 0.0, -0.1))


def test_reward_increases_when_moving_toward_target(twin, spec):
    twin.reset(11)
    start_reward = twin.reward()
    # Pick the sampled pose whose FK lands closest to the target, then go there.
    rng = np.random.default_rng(0)
    samples = rng.uniform([-1.5, -0.8, -0.8, -0.3, 0.0, -0.3], [1.5, 0.6, 0.8, 0.3, 1.5, 0.3],
                          (4000, 6))
    distance = np.linalg.norm(wx250s_ee_position(samples) - twin.target, axis=-1)
    goal = np.r_[samples[np.argmin(distance)], spec.default_pose[6]]
    walk_to(twin, goal, spec.limits_array('max_step'))
    settle(twin, goal, 10)
    assert twin.reward() > start_reward + 0.05
    assert twin.reward() == pytest.approx(-distance.min(), abs=0.01)


def top_down_ik(position: np.ndarray, q_start: np.ndarray) -> np.ndarray:
    """Arm angles (6,) putting the EE at ``position`` with the gripper pointing down."""
    down = np.array([0.0, 0.0, -1.0])

    def residual(q):
        pose = wx250s_fk(q)
        return np.r_[pose[:3, 3] - position, 0.3 * np.cross(pose[:3, 0], down)]

    q = np.array(q_start, dtype=np.float64)
    for _ in range(50):         # Gauss-Newton with a finite-difference Jacobian
        r = residual(q)
        jac = np.stack([(residual(q + dq) - r) / 1e-6 for dq in np.eye(6) * 1e-6], axis=1)
        q -= np.linalg.lstsq(jac, r, rcond=None)[0]
    assert np.linalg.norm(residual(q)) < 1e-6
    return q


def test_cube_can_be_grasped_and_lifted(twin, spec):
    max_step = spec.limits_array('max_step')
    cube = twin.task_state()[1][6:]
    above = top_down_ik(cube + [0.0, 0.0, 0.10], np.array([0, 0, 0, 0, 1.2, 0]))
    at_cube = top_down_ik(cube + [0.0, 0.0, 0.005], above)
    open_, closed = spec.default_pose[6], spec.joints[6].lower
    for goal in ([*above, open_], [*at_cube, open_], [*at_cube, closed], [*above, closed]):
        walk_to(twin, np.array(goal), max_step)
        settle(twin, np.array(goal), 10)
    fingers = twin.joints().position[6]
    assert fingers == pytest.approx(0.02, abs=2e-3)      # stopped by the 40 mm cube
    assert twin.task_state()[1][8] > 0.08                 # lifted 6 cm off the table


def test_finger_equality_keeps_right_equal_minus_left(twin, spec):
    for left in (0.02, 0.015, 0.037, 0.03):
        settle(twin, np.r_[spec.default_command[:6], left], 10)
        position = twin.joints().position
        assert position[6] == pytest.approx(left, abs=1e-3)
        assert position[7] == pytest.approx(-position[6], abs=5e-4)


def test_render_gives_rgb_image(twin):
    image = twin.render(320, 240)
    if image is None:
        pytest.skip('no offscreen GL backend (set MUJOCO_GL=egl or osmesa)')
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert image.std() > 5.0          # a scene, not a blank frame


def test_control_step_is_fast(twin):
    twin.step()
    start = time.process_time()
    for _ in range(200):
        twin.step()
    per_step = (time.process_time() - start) / 200
    assert per_step < 3e-3, f'{per_step * 1e3:.2f} ms of CPU per 50 ms control step'


# URDF <-> YAML <-> MJCF agreement ---------------------------------------------------------
def test_urdf_joints_and_limits_equal_yaml(spec):
    root = urdf_root(spec)
    movable = {j.get('name'): j for j in root.findall('joint') if j.get('type') != 'fixed'}
    assert sorted(movable) == sorted(spec.joint_names)
    for joint in spec.joints:
        element = movable[joint.name]
        kind = 'prismatic' if joint.name.endswith('finger') else 'revolute'
        assert element.get('type') == kind, joint.name
        limit = element.find('limit')
        for attr in ('lower', 'upper', 'velocity', 'effort'):
            assert float(limit.get(attr)) == getattr(joint, attr), (joint.name, attr)
        mimic = element.find('mimic')
        assert (mimic is None) == joint.actuated, joint.name
    mimic = movable['right_finger'].find('mimic')
    assert mimic.get('joint') == 'left_finger' and float(mimic.get('multiplier')) == -1.0


def test_urdf_chain_reaches_home_pose_m(spec):
    root = urdf_root(spec)
    by_child = {j.find('child').get('link'): j for j in root.findall('joint')}
    link, offset = 'ee_gripper_link', np.zeros(3)
    while link in by_child:       # all origins are pure translations at q = 0
        joint = by_child[link]
        origin = joint.find('origin')
        assert origin.get('rpy', '0 0 0') == '0 0 0'
        offset += np.array([float(v) for v in origin.get('xyz').split()])
        link = joint.find('parent').get('link')
    assert link == 'base_link'
    np.testing.assert_allclose(offset, WX250S_M[:3, 3], atol=1e-9)


def test_mjcf_ranges_and_actuators_equal_yaml(spec):
    model = mujoco.MjModel.from_xml_path(str(MJCF))
    for joint in spec.joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint.name)
        assert jid >= 0, joint.name
        assert model.jnt_limited[jid]
        np.testing.assert_array_equal(model.jnt_range[jid], [joint.lower, joint.upper])
        if joint.actuated:
            aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, joint.name)
            assert model.actuator_trnid[aid, 0] == jid
            np.testing.assert_array_equal(model.actuator_ctrlrange[aid],
                                          [joint.lower, joint.upper])
            np.testing.assert_array_equal(model.actuator_forcerange[aid],
                                          [-joint.effort, joint.effort])
    assert model.nu == len(spec.actuated_joints)
    assert model.opt.timestep * 25 == pytest.approx(spec.period_s)
