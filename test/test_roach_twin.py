"""Roach: spec, URDF and MJCF agree; the twin walks, turns, stops, feels friction; tasks reward."""

from __future__ import annotations

import math
import time

import mujoco
import numpy as np
import pytest
from conftest import urdf_root

from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.robots.roach.twin import MJCF, RoachTwin
from dexmpc_ros.robots.roach.tasks import (WaypointsConfig, figure8_reference, figure8_reward,
                                           line_coordinates, make_task, straight_reward,
                                           waypoint_reward)

REV = 2.0 * math.pi            # rad per leg-crank revolution
LEGS = [f'{side}_{leg}' for side in ('left', 'right') for leg in ('front', 'middle', 'rear')]


@pytest.fixture(scope='module')
def spec():
    return load_robot_spec('roach')


@pytest.fixture
def twin(spec):
    twin = RoachTwin(seed=0, spec=spec)
    yield twin
    twin.close()


def drive(twin: RoachTwin, command, steps: int) -> np.ndarray:
    """Hold ``command`` [rad/s] for ``steps`` control periods; return the unwrapped yaw."""
    twin.apply_command(np.asarray(command, dtype=np.float64))
    yaws = []
    for _ in range(steps):
        twin.step()
        yaws.append(twin.planar_pose()[2])
    return np.unwrap(yaws)


# Spec ------------------------------------------------------------------------------------------
def test_spec_is_a_velocity_commanded_two_crank_robot(spec):
    assert spec.name == 'roach' and spec.urdf == 'roach.urdf'
    assert spec.command_interface == 'velocity' and spec.control_rate_hz == 10.0
    assert spec.joint_names == spec.command_names == ['left_legs', 'right_legs']
    for joint in spec.joints:
        assert joint.lower == -math.inf and joint.upper == math.inf
        assert joint.velocity == pytest.approx(9 * REV, abs=0.1)      # 9 leg rev/s
        assert 0 < joint.max_step < joint.velocity and 0 < joint.effort < 0.1
    assert spec.default_pose == (0.0, 0.0)
    np.testing.assert_array_equal(spec.default_command, [0.0, 0.0])
    assert spec.driver['port'] == '/dev/ttyUSB0' and spec.driver['baud'] == 57600
    assert spec.driver['robot_address'] == 0x0001


# URDF <-> YAML <-> MJCF ----------------------------------------------------------------------
def _floats(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def test_urdf_cranks_equal_yaml_and_whegs_mimic_them(spec):
    joints = {j.get('name'): j for j in urdf_root(spec).findall('joint')}
    driven = {name: j for name, j in joints.items() if j.find('mimic') is None}
    assert sorted(driven) == sorted(spec.joint_names)
    for joint in spec.joints:
        element = driven[joint.name]
        assert element.get('type') == 'continuous'
        np.testing.assert_array_equal(_floats(element.find('axis').get('xyz')), [0, 1, 0])
        limit = element.find('limit')
        assert float(limit.get('velocity')) == joint.velocity
        assert float(limit.get('effort')) == joint.effort
    followers = {name: j for name, j in joints.items() if j.find('mimic') is not None}
    assert sorted(followers) == sorted(LEGS)
    for name, element in followers.items():
        mimic = element.find('mimic')
        assert mimic.get('joint') == name.split('_')[0] + '_legs'
        assert float(mimic.get('multiplier')) == pytest.approx(1 / 3, abs=1e-12)
        assert float(mimic.get('offset')) == 0.0


def test_mjcf_joints_actuators_and_couplings_equal_yaml(spec):
    model = mujoco.MjModel.from_xml_path(str(MJCF))
    assert model.nu == len(spec.command_names)
    for joint in spec.joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint.name)
        assert jid >= 0 and not model.jnt_limited[jid]
        np.testing.assert_array_equal(model.jnt_axis[jid], [0, 1, 0])
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, joint.name)
        assert model.actuator_trnid[aid, 0] == jid
        np.testing.assert_array_equal(model.actuator_ctrlrange[aid],
                                      [-joint.velocity, joint.velocity])
        np.testing.assert_array_equal(model.actuator_forcerange[aid],
                                      [-joint.effort, joint.effort])
    coupled = {}
    for eq in range(model.neq):
        assert model.eq_type[eq] == mujoco.mjtEq.mjEQ_JOINT
        leg = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.eq_obj1id[eq])
        crank = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.eq_obj2id[eq])
        np.testing.assert_allclose(model.eq_data[eq, :5], [0, 1 / 3, 0, 0, 0], atol=1e-12)
        coupled[leg] = crank
    assert coupled == {leg: leg.split('_')[0] + '_legs' for leg in LEGS}
    n_sub = round(spec.period_s / model.opt.timestep)
    assert n_sub * model.opt.timestep == pytest.approx(spec.period_s, abs=1e-12)


def test_urdf_wheg_geometry_equals_mjcf(spec):
    """Same hub positions and the same spoke directions in both descriptions."""
    model = mujoco.MjModel.from_xml_path(str(MJCF))
    links = {link.get('name'): link for link in urdf_root(spec).findall('link')}
    joints = {j.get('name'): j for j in urdf_root(spec).findall('joint')}
    for leg in LEGS:
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f'{leg}_leg')
        np.testing.assert_allclose(_floats(joints[leg].find('origin').get('xyz')),
                                   model.body_pos[body], atol=1e-9)
        geoms = np.flatnonzero(model.geom_bodyid == body)
        mj_dirs = model.geom_pos[geoms] / np.linalg.norm(model.geom_pos[geoms], axis=1,
                                                         keepdims=True)
        urdf_dirs = []
        for visual in links[f'{leg}_leg'].findall('visual'):
            origin = visual.find('origin')
            pitch = _floats(origin.get('rpy'))[1]
            axis = np.array([math.sin(pitch), 0.0, math.cos(pitch)])    # R_y(pitch) z
            centre = _floats(origin.get('xyz'))
            np.testing.assert_allclose(centre / np.linalg.norm(centre), axis, atol=1e-5)
            urdf_dirs.append(axis)
        assert len(urdf_dirs) == len(geoms) == 3
        for direction in urdf_dirs:
            assert np.min(np.linalg.norm(mj_dirs - direction, axis=1)) < 1e-5, leg


def test_reset_pose_is_an_alternating_tripod(twin):
    """One tripod stands; half a crank turn later the other one does."""
    model, data = twin.model, twin.data

    def lowest_tip_heights() -> dict[str, float]:
        mujoco.mj_kinematics(model, data)
        heights = {}
        for leg in LEGS:
            body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f'{leg}_leg')
            tips = []
            for g in np.flatnonzero(model.geom_bodyid == body):
                axis = data.geom_xmat[g].reshape(3, 3)[:, 2]
                half, radius = model.geom_size[g, 1], model.geom_size[g, 0]
                tips.append(min(data.geom_xpos[g][2] + s * half * axis[2] for s in (-1, 1))
                            - radius)
            heights[leg] = min(tips) - data.qpos[2]     # relative to the body centre
        return heights

    first = {'left_front', 'left_rear', 'right_middle'}
    stance, swing = -0.030, -(0.027 * math.cos(math.pi / 3) + 0.003)    # 60 deg off vertical
    heights = lowest_tip_heights()
    for leg, height in heights.items():
        assert height == pytest.approx(stance if leg in first else swing, abs=1e-6), leg
    for adr_leg, adr_crank, _ in twin._couplings:               # half a crank revolution
        data.qpos[adr_crank] = math.pi
        data.qpos[adr_leg] = math.pi / 3
    swapped = lowest_tip_heights()
    for leg in LEGS:
        assert swapped[leg] == pytest.approx(swing if leg in first else stance, abs=1e-6), leg


# Locomotion ----------------------------------------------------------------------------------
def test_equal_legs_walk_forward_straight(twin):
    yaw = drive(twin, [4 * REV, 4 * REV], 30)          # 4 leg rev/s for 3 s
    x, y, _ = twin.planar_pose()
    assert x > 0.5                                       # measured 0.71 m
    assert abs(y) < 0.03 and np.max(np.abs(yaw)) < 0.05
    np.testing.assert_allclose(twin.joints().velocity, [4 * REV, 4 * REV], atol=1.5)
    assert twin.odom().linear[0] > 0.15                  # body frame: forward


def test_backward_command_walks_backward(twin):
    drive(twin, [-4 * REV, -4 * REV], 20)
    assert twin.planar_pose()[0] < -0.3


@pytest.mark.parametrize('fast_side, sign', [('left', -1.0), ('right', 1.0)])
def test_unequal_legs_turn_toward_slow_side(twin, fast_side, sign):
    command = [4 * REV, 2 * REV] if fast_side == 'left' else [2 * REV, 4 * REV]
    yaw = drive(twin, command, 10)
    assert sign * yaw[-1] > 0.5                          # measured 1.2-1.6 rad in 1 s


def test_zero_command_stops_the_robot(twin):
    drive(twin, [6 * REV, 6 * REV], 20)
    assert np.linalg.norm(twin.odom().linear) > 0.2
    drive(twin, [0.0, 0.0], 10)
    assert np.linalg.norm(twin.odom().linear) < 0.01
    assert np.max(np.abs(twin.joints().velocity)) < 0.5
    assert np.linalg.norm(twin.odom().angular) < 0.1


def test_low_friction_reduces_progress(spec):
    progress = {}
    for friction in (1.0, 0.01):
        twin = RoachTwin(seed=0, friction=friction, spec=spec)
        assert twin.friction == friction
        drive(twin, [4 * REV, 4 * REV], 30)
        progress[friction] = twin.planar_pose()[0]
    assert progress[0.01] < 0.75 * progress[1.0]         # measured 0.41 vs 0.71 m


def test_friction_setter_validates_and_survives_reset(twin):
    twin.friction = 0.3
    twin.reset(1)
    assert twin.friction == 0.3
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match='friction'):
            twin.friction = bad


@pytest.mark.parametrize('seed', [0, 1])
def test_random_commands_within_limits_never_flip_it(twin, spec, seed):
    """10 s of commands as the supervisor passes them (speed limit, max_step per step)."""
    rng = np.random.default_rng(seed)
    vmax, max_step = spec.limits_array('velocity'), spec.limits_array('max_step')
    twin.friction = float(rng.choice([0.05, 1.0, 2.0]))
    lowest_up = 1.0
    for _ in range(100):
        measured = twin.joints().velocity
        wish = rng.uniform(-vmax, vmax)
        twin.apply_command(np.clip(np.clip(wish, measured - max_step, measured + max_step),
                                   -vmax, vmax))
        twin.step()
        lowest_up = min(lowest_up, twin.up_vector()[2])
    assert lowest_up > 0.7                               # never tilted beyond ~45 deg


def test_command_is_clamped_and_validated(twin, spec):
    twin.apply_command(np.array([1e3, -1e3]))
    np.testing.assert_array_equal(twin.data.ctrl, [spec.joints[0].velocity,
                                                   -spec.joints[1].velocity])
    with pytest.raises(ValueError, match='shape'):
        twin.apply_command(np.zeros(3))
    with pytest.raises(ValueError, match='non-finite'):
        twin.apply_command(np.array([math.nan, 0.0]))


def test_odom_matches_free_joint_state(twin):
    drive(twin, [5 * REV, 3 * REV], 7)
    pose = twin.odom()
    model, data = twin.model, twin.data
    np.testing.assert_array_equal(pose.position, data.qpos[:3])
    np.testing.assert_array_equal(pose.orientation_xyzw, data.qpos[[4, 5, 6, 3]])
    assert np.linalg.norm(pose.orientation_xyzw) == pytest.approx(1.0)
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, 'base_link')
    velocity = np.zeros(6)                              # (angular, linear), body frame
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, body, velocity, 1)
    np.testing.assert_allclose(pose.angular, velocity[:3], atol=1e-9)
    np.testing.assert_allclose(pose.linear, velocity[3:], atol=1e-9)
    assert np.linalg.norm(pose.linear) > 0.05           # a moving state, not a trivial one
    x, y, yaw = twin.planar_pose()
    q = pose.orientation_xyzw
    assert yaw == pytest.approx(math.atan2(2 * (q[3] * q[2] + q[0] * q[1]),
                                           1 - 2 * (q[1] ** 2 + q[2] ** 2)), abs=1e-9)


def test_joint_reading_follows_crank_state(twin):
    drive(twin, [3 * REV, 3 * REV], 10)
    reading = twin.joints()
    assert reading.position == pytest.approx(twin.data.qpos[7:9].tolist())
    assert reading.position[0] == pytest.approx(3 * REV * 1.0, rel=0.05)   # ~1 s at 3 rev/s
    np.testing.assert_allclose(reading.velocity, [3 * REV, 3 * REV], atol=1.0)
    assert np.all(np.abs(reading.effort) <= 0.02 + 1e-12)


# Rewards (vectorized) ------------------------------------------------------------------------
def test_waypoint_reward_is_minus_distance_batched():
    xy = np.array([[[0.0, 0.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, -1.0]]])      # (2, 2, 2)
    reward = waypoint_reward(xy, np.array([0.0, 0.0]))
    np.testing.assert_allclose(reward, [[0.0, -5.0], [-math.sqrt(2), -math.sqrt(2)]])


def test_straight_reward_is_speed_along_line_minus_lateral():
    heading = math.pi / 2                                # line along +y from (1, 1)
    origin = np.array([1.0, 1.0])
    prev = np.array([[1.0, 1.0], [1.0, 1.0], [1.02, 1.0]])
    xy = np.array([[1.0, 1.1], [1.03, 1.05], [1.02, 0.95]])
    reward = straight_reward(xy, prev, origin, heading, dt=0.1, lateral_weight=2.0)
    np.testing.assert_allclose(reward, [1.0, 0.5 - 0.06, -0.5 - 0.04], atol=1e-12)
    progress, lateral = line_coordinates(np.array([1.03, 1.05]), origin, heading)
    assert progress == pytest.approx(0.05) and lateral == pytest.approx(-0.03)   # right of line


def test_figure8_reference_shape_and_timing():
    size, period, origin, heading = 0.5, 20.0, np.array([0.2, -0.1]), 0.7
    times = np.array([[0.0, period / 2], [period, 3 * period]])
    np.testing.assert_allclose(figure8_reference(times, size, period, origin, heading),
                               np.broadcast_to(origin, (2, 2, 2)), atol=1e-12)  # crossings
    tip = figure8_reference(period / 4, size, period, origin, heading)
    assert np.linalg.norm(tip - origin) == pytest.approx(size)        # end of the long axis
    step = figure8_reference(1e-4, size, period, origin, heading) - origin
    assert math.atan2(step[1], step[0]) == pytest.approx(heading, abs=1e-3)   # leaves along
    lobe = figure8_reference(np.linspace(0, period / 2, 200), size, period, origin, heading)
    other = figure8_reference(np.linspace(period / 2, period, 200), size, period, origin,
                              heading)
    normal = np.array([-math.sin(heading - math.pi / 4), math.cos(heading - math.pi / 4)])
    assert np.all((lobe - origin) @ np.array([math.cos(heading - math.pi / 4),
                                              math.sin(heading - math.pi / 4)]) >= -1e-12)
    assert np.all((other - origin) @ np.array([math.cos(heading - math.pi / 4),
                                               math.sin(heading - math.pi / 4)]) <= 1e-12)
    assert np.max(np.abs((lobe - origin) @ normal)) == pytest.approx(size / 2, rel=1e-3)
    reward = figure8_reward(tip[None] + [[0.0, 0.0], [0.3, 0.4]], period / 4, size, period,
                            origin, heading)
    np.testing.assert_allclose(reward, [0.0, -0.5], atol=1e-12)


# Tasks ---------------------------------------------------------------------------------------
def test_waypoints_advance_within_reach_radius_and_finish():
    task = make_task('waypoints', waypoints=[[0.5, 0.0], [0.5, 0.5]])
    task.reset(np.random.default_rng(0), np.zeros(3))
    assert task.last_reward == pytest.approx(-0.5)
    task.update(np.array([0.44, 0.0, 0.0]), 0.1)          # 6 cm short: not reached
    assert task.extras()[0] == 0 and task.last_reward == pytest.approx(-0.06)
    task.update(np.array([0.46, 0.0, 0.0]), 0.2)          # 4 cm: reached
    assert task.last_reward == pytest.approx(-0.04)
    np.testing.assert_allclose(task.target(), [0.5, 0.5])
    assert not task.done()
    task.update(np.array([0.5, 0.48, 0.0]), 0.3)
    assert task.done()


def test_random_waypoints_lie_ahead_within_range():
    config = WaypointsConfig(count=3)
    task = make_task('waypoints', count=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        task.reset(rng, np.zeros(3))
        points = np.vstack([np.zeros(2), task.waypoints])
        legs = np.diff(points, axis=0)
        lengths = np.linalg.norm(legs, axis=1)
        assert np.all((lengths >= 0.3) & (lengths <= 1.0))
        headings = np.arctan2(legs[:, 1], legs[:, 0])
        turns = np.diff(np.r_[0.0, headings])
        assert np.all(np.abs(np.arctan2(np.sin(turns), np.cos(turns)))
                      <= config.max_bearing + 1e-12)


def test_task_options_are_validated():
    with pytest.raises(ValueError, match='unknown task'):
        make_task('moonwalk')
    with pytest.raises(ValueError, match="unknown options \\['speed'\\].*accepted"):
        make_task('figure8', speed=2.0)
    with pytest.raises(ValueError, match='distance_range'):
        make_task('waypoints', distance_range=(1.0, 0.5))
    with pytest.raises(ValueError, match='waypoints'):
        make_task('waypoints', waypoints=[[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match='unknown task'):
        RoachTwin(task='moonwalk')


def test_reset_with_same_seed_repeats_the_waypoint(twin):
    twin.reset(7)
    first = twin.task.target()
    twin.reset(8)
    assert not np.allclose(twin.task.target(), first)
    drive(twin, [4 * REV, 4 * REV], 5)
    twin.reset(7)
    np.testing.assert_array_equal(twin.task.target(), first)
    np.testing.assert_allclose(twin.planar_pose(), [0.0, 0.0, 0.0], atol=1e-12)
    distance = np.linalg.norm(first)
    assert 0.3 <= distance <= 1.0 and abs(math.atan2(first[1], first[0])) <= math.pi / 4


def test_twin_task_state_and_reward_track_the_waypoint(spec):
    twin = make_twin('roach', task='waypoints', seed=0, spec=spec, waypoints=[[0.4, 0.0]],
                     friction=0.8)
    names, values = twin.task_state()
    assert names == ['x', 'y', 'cos_yaw', 'sin_yaw', 'target_x', 'target_y', 'waypoint_index']
    np.testing.assert_allclose(values[2:4], [1.0, 0.0], atol=1e-12)   # heading +x at reset
    np.testing.assert_allclose(values[4:], [0.4, 0.0, 0.0])
    assert twin.reward() == pytest.approx(-0.4, abs=1e-6)
    steps = 0
    while not twin.done() and steps < 40:
        drive(twin, [4 * REV, 4 * REV], 1)
        steps += 1
        x, y = twin.task_state()[1][:2]
        assert twin.reward() == pytest.approx(-math.hypot(x - 0.4, y), abs=1e-9)
    assert twin.done() and 10 <= steps <= 25              # 0.35 m at 0.24 m/s
    np.testing.assert_allclose(twin.data.mocap_pos[0, :2], [0.4, 0.0])


def test_task_state_heading_is_cos_sin_and_continuous_through_the_wrap(twin):
    twin.apply_command(np.array([2 * REV, 4 * REV]))     # counter-clockwise skid turn
    headings, planar = [], []
    for _ in range(40):                                  # 4 s at 1.2-1.6 rad/s: past +pi
        twin.step()
        state = dict(zip(*twin.task_state()))
        headings.append([state['cos_yaw'], state['sin_yaw']])
        planar.append(twin.planar_pose()[2])
        assert (state['x'], state['y']) == tuple(twin.planar_pose()[:2])
    headings, planar = np.array(headings), np.array(planar)
    np.testing.assert_allclose(headings, np.c_[np.cos(planar), np.sin(planar)], atol=1e-12)
    turned = np.abs(np.diff(np.unwrap(planar)))
    assert np.unwrap(planar)[-1] > math.pi and np.max(np.abs(np.diff(planar))) > 5.0  # wrapped
    # a chord is never longer than its arc: no step of cos/sin jumps
    assert np.all(np.linalg.norm(np.diff(headings, axis=0), axis=1) <= turned + 1e-12)
    assert np.max(turned) < 0.3


def test_straight_task_rewards_running_speed(spec):
    twin = make_twin('roach', task='straight', seed=0, spec=spec, lateral_weight=1.0)
    names, _ = twin.task_state()
    assert names[6:] == ['progress', 'lateral', 'line_heading']
    drive(twin, [4 * REV, 4 * REV], 20)
    names, values = twin.task_state()
    state = dict(zip(names, values))
    assert state['progress'] == pytest.approx(state['x']) and state['line_heading'] == 0.0
    assert state['target_x'] == pytest.approx(state['x'] + 0.5)
    assert twin.reward() == pytest.approx(0.25, abs=0.08)   # ~ forward speed [m/s]


def test_figure8_task_targets_the_moving_reference(spec):
    twin = make_twin('roach', task='figure8', seed=0, spec=spec, size=0.4, period_s=20.0)
    drive(twin, [2 * REV, 2 * REV], 12)
    names, values = twin.task_state()
    state = dict(zip(names, values))
    assert state['episode_time'] == pytest.approx(1.2)
    ref = figure8_reference(1.2, 0.4, 20.0)
    np.testing.assert_allclose([state['target_x'], state['target_y']], ref, atol=1e-12)
    assert twin.reward() == pytest.approx(-math.hypot(state['x'] - ref[0],
                                                      state['y'] - ref[1]), abs=1e-12)


# Rendering and cost --------------------------------------------------------------------------
def test_render_gives_rgb_image(twin):
    image = twin.render(320, 240)
    if image is None:
        pytest.skip('no offscreen GL backend (set MUJOCO_GL=egl or osmesa)')
    assert image.shape == (240, 320, 3) and image.dtype == np.uint8
    assert image.std() > 5.0


def test_control_step_is_fast(twin):
    twin.apply_command(np.array([4 * REV, 4 * REV]))
    twin.step()
    start = time.process_time()
    for _ in range(100):
        twin.step()
    per_step = (time.process_time() - start) / 100
    assert per_step < 3e-3, f'{per_step * 1e3:.2f} ms of CPU per 100 ms control step'
