"""
Hardware in the loop without hardware: the real drivers against the twins behind the wire.

``dexmpc up widowx_hil_sim`` / ``roach_hil_sim`` run the hardware command path end to end:
controller -> safety -> ``command`` -> driver_node (the real WidowXDriver over
dynamixel_sdk, the real RoachDriver over pyserial) -> pseudo-terminal -> wire-protocol
emulator whose body is the MuJoCo twin (hil_world_node). Checked on the bag: the driver's
joint_states at the control rate, the joints following the commands as in the sim runs,
the world's task_state paired with them by stamp, episodes, healthy driver diagnostics.
Two smaller tests cover the world without ROS and the driver waiting for a late port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dexmpc_ros.core.message_fields import command_values
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.data.bag_reader import episodes, joint_state_series, read_bag, split_states
from dexmpc_ros.robots.hil_world import HilWorld
from dexmpc_ros.robots.driver_registry import make_driver
from node_process import start_node, stop

REPO = Path(__file__).resolve().parents[1]
REQUIRED_TOPICS = ('/joint_states', '/command_raw', '/command', '/diagnostics', '/task_state',
                   '/reward', '/episode', '/episode_start')
LAGS_S = np.arange(0.0, 0.31, 0.05)     # the joints follow a command within this delay


def dexmpc_up(experiment: str, run_dir: Path, env: dict, duration: float
              ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', experiment, '--duration',
           str(duration), '--output', str(run_dir), '--quiet']
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60,
                          cwd=REPO)


def driver_statuses(topics: dict, name: str) -> list[dict]:
    """``{level, message, values}`` of every status of node ``name`` in the bag, in order."""
    return [{'level': int(s.level), 'message': s.message,
             'values': {kv.key: kv.value for kv in s.values}}
            for _, msg in topics['/diagnostics'] for s in msg.status if s.name == name]


@pytest.mark.e2e
@pytest.mark.parametrize('experiment', ['widowx_hil_sim', 'roach_hil_sim'])
def test_hil_run_drives_the_emulated_robot_through_its_driver(experiment, tmp_path, ros_env):
    duration = 12.0
    run_dir = tmp_path / 'run'
    result = dexmpc_up(experiment, run_dir, ros_env, duration)
    assert result.returncode == 0, result.stdout + result.stderr
    robot = yaml.safe_load((run_dir / 'spec.yaml').read_text())['robot']
    spec = load_robot_spec(robot)
    assert (run_dir / 'logs' / 'world.log').is_file()
    assert not (run_dir / 'dev' / Path(spec.driver['port']).name).exists()  # world stopped

    topics = read_bag(run_dir / 'bag')
    for topic in REQUIRED_TOPICS + (('/odom',) if robot == 'roach' else ()):
        assert topics.get(topic), f'{topic} missing from the bag of {experiment}'

    # joint_states (the driver's reads) at the control rate
    joints = joint_state_series(topics['/joint_states'])
    span = (joints.receive_ns[-1] - joints.receive_ns[0]) * 1e-9
    assert span > duration / 2
    assert len(joints) / span == pytest.approx(spec.control_rate_hz, rel=0.25)
    assert list(joints.names) == spec.joint_names
    assert np.all(np.diff(joints.stamps) > 0)

    # the world's task_state is stamped like a driver state: one state = both of one stamp
    # (the recorder may subscribe to task_state a little before joint_states)
    task = joint_state_series(topics['/task_state'])
    assert np.isin(task.stamps[task.stamps >= joints.stamps[0]], joints.stamps).all()
    assert len(task) >= 0.9 * len(joints)
    assert len(topics['/reward']) >= 0.8 * len(joints)
    eps = episodes(topics)
    assert eps and all(ep.stamp_ns is not None for ep in eps)
    assert all(ep.stamp_ns in set(joints.stamps.tolist()) for ep in eps
               if ep.stamp_ns >= joints.stamps[0])
    assert np.all(split_states(joints, eps).position >= 0)

    # commands reached the emulated robot: the measured joints follow them, as in sim
    # (widowx_scripted_sim: range of every arm joint = commanded range, median error at the
    # best delay 2-4 % of it; roach_scripted_sim: leg speeds within 2 % of the range)
    position = spec.command_interface == 'position'
    command_t = np.array([t for t, _ in topics['/command']], dtype=np.int64)
    commands = np.array([command_values(m, spec.command_interface)
                         for _, m in topics['/command']])
    assert len(commands) >= 0.5 * span * spec.control_rate_hz
    measured = (joints.position if position else joints.velocity)[:, spec.actuated_index]
    for j, name in enumerate(spec.command_names):
        wanted = np.ptp(commands[:, j])
        if wanted < 0.1:
            continue                                  # the gripper barely moves
        assert np.ptp(measured[:, j]) > 0.7 * wanted, name
        error = min(np.median(np.abs(np.interp(command_t + lag * 1e9, joints.receive_ns,
                                               measured[:, j]) - commands[:, j]))
                    for lag in LAGS_S)
        assert error < 0.1 * wanted, (name, error, wanted)
    if robot == 'roach':
        first, last = topics['/odom'][0][1], topics['/odom'][-1][1]
        moved = np.hypot(last.pose.pose.position.x - first.pose.pose.position.x,
                         last.pose.pose.position.y - first.pose.pose.position.y)
        assert moved > 0.2, moved                     # the body walked (sim: ~0.7 m)

    # the driver stayed healthy: OK, reading at the control rate, no errors or faults
    statuses = driver_statuses(topics, 'robot')
    assert statuses and statuses[-1]['level'] == 0, statuses[-1:]
    values = statuses[-1]['values']
    assert float(values['rate_hz']) == pytest.approx(spec.control_rate_hz, rel=0.25)
    for key in ('read_errors', 'write_errors', 'faults', 'commands_stale'):
        assert values[key] == '0', (key, values)
    assert int(values['writes']) >= 0.5 * span * spec.control_rate_hz
    world = driver_statuses(topics, 'world')
    assert world and world[-1]['level'] == 0, world[-1:]


@pytest.mark.parametrize('robot,command', [('widowx', 'waist'), ('roach', 'legs')])
def test_world_resets_reach_the_real_driver(robot, command, tmp_path):
    """Without ROS: the driver moves the twin; a world reset shows in the driver's reads."""
    spec = load_robot_spec(robot)
    port = str(tmp_path / 'dev' / 'tty')
    task = 'reach' if robot == 'widowx' else 'waypoints'
    with HilWorld(robot, port, {'task': task}, seed=0) as world:
        driver = make_driver(robot, spec, {'port': port})
        with driver:
            driver.enable()
            goal = np.asarray(spec.default_command, dtype=float)
            if command == 'waist':
                goal[0] = 0.4                             # rad
            else:
                goal[:] = 20.0                            # rad/s, both crank sets
            before = world.observe()
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                driver.write(goal)
                state = driver.read()
                moved = (abs(state.position[0] - 0.4) < 0.01 if command == 'waist'
                         else np.all(np.abs(state.velocity - 20.0) < 2.0))
                if moved:
                    break
                time.sleep(0.02)
            assert moved, state
            after = world.observe()
            assert after.twin_time_s > before.twin_time_s
            assert not np.allclose(after.task_values[:3], before.task_values[:3])

            for _ in range(20):                           # 0.4 s more: legs turn ~8 rad
                driver.write(goal)
                time.sleep(0.02)
            before_reset = driver.read().position

            world.request_reset(seed=5)
            deadline = time.monotonic() + 2.0
            while world.reset_pending and time.monotonic() < deadline:
                time.sleep(0.01)
            assert world.observe().resets == before.resets + 1
            time.sleep(0.15)                              # > one twin period
            if command == 'legs':         # reply-mode telemetry: a record answers a command
                stamp = driver.read().stamp
                driver.write(goal)
                deadline = time.monotonic() + 2.0
                while driver.read().stamp == stamp and time.monotonic() < deadline:
                    time.sleep(0.01)
            state = driver.read()
            if command == 'waist':                        # the arm is back home and holds
                assert abs(state.position[0]) < 0.02, state.position
            else:                                         # the cranks restarted from 0 rad
                assert np.all(state.position < before_reset - 2.0), (state.position,
                                                                     before_reset)
            driver.disable()


def test_driver_node_waits_for_a_late_port(tmp_path, ros_env, ros_domain):
    """The world's port appears 2 s after the driver node starts: it connects, not dies."""
    pytest.importorskip('rclpy')
    from sensor_msgs.msg import JointState

    from dexmpc_ros.ros.probe import GraphProbe

    port = tmp_path / 'dev' / 'ttyDXL'
    proc, log = start_node('dexmpc_ros.ros.driver_node', tmp_path, ros_env, {
        'robot': 'widowx', 'driver': 'widowx', 'driver_options': f'{{port: {port}}}',
        'connect_wait_s': 10.0}, 'driver.log')
    probe = world = None
    try:
        time.sleep(2.0)                                   # the port does not exist yet
        assert proc.poll() is None, log.read_text()
        world = HilWorld('widowx', str(port), {'task': 'reach'}, seed=0).start()
        probe = GraphProbe(ros_domain, {'joint_states': JointState}, name='hil_test')
        probe.spin_until(lambda: len(probe.received['joint_states']) >= 5, 20.0,
                         'joint_states from the driver')
        assert 'waiting up to 10 s for it to appear' in log.read_text()
    finally:
        if probe is not None:
            probe.close()
        stop(proc)
        if world is not None:
            world.stop()
    assert proc.returncode == 0, log.read_text()
    assert os.path.lexists(port) is False
