"""
Hardware in the loop without hardware: the real drivers against the twins behind the wire.

``dexmpc up widowx_hil_sim`` / ``roach_hil_sim`` run the hardware command path end to end:
controller -> safety -> ``command`` -> driver_node (the real WidowXDriver over
dynamixel_sdk, the real RoachDriver over pyserial) -> pseudo-terminal -> wire-protocol
emulator whose body is the MuJoCo twin (hil_world_node). The run lasts until the twin
simulated and the driver read and wrote enough, however long a loaded machine takes.
Checked on the bag: commands answering the driver's joint_states, the joints following
them as in the sim runs, the world's task_state paired with them by stamp, episodes,
healthy driver diagnostics.
Two smaller tests cover the world without ROS and the driver waiting for a late port.
"""

from __future__ import annotations

import os
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
from dexmpc_run import answered_states, count, healthy_or_stalled, run_until
from node_process import start_node, stop

REPO = Path(__file__).resolve().parents[1]
REQUIRED_TOPICS = ('/joint_states', '/command_raw', '/command', '/diagnostics', '/task_state',
                   '/reward', '/episode', '/episode_start')
# The joints follow a command after some delay: the best one is searched, up to 1 s (how
# long the path takes on a busy machine is load's business; a 4 s sine has no alias there).
LAGS_S = np.arange(0.0, 1.01, 0.05)
WAIT_S = 60.0                           # a wait for the emulated robot, not a bound [s]


def driver_statuses(topics: dict, name: str) -> list[dict]:
    """``{level, message, values}`` of every status of node ``name`` in the bag, in order."""
    return [{'level': int(s.level), 'message': s.message,
             'values': {kv.key: kv.value for kv in s.values}}
            for _, msg in topics['/diagnostics'] for s in msg.status if s.name == name]


#: What a HIL run must have done before it ends (however long a loaded machine takes): the
#: world's twin simulated SIM_S seconds; the driver read and wrote N_IO times each.
SIM_S = 12.0
N_IO = 100


def enough_hil_run(status: dict) -> bool:
    return count(status, 'world', 'twin_time_s') >= SIM_S and \
        min(count(status, 'robot', 'reads'), count(status, 'robot', 'writes')) >= N_IO


def walked_m(topics: dict) -> float:
    """The farthest the body got from an episode's first pose, within that episode [m]."""
    eps, far = episodes(topics), 0.0
    for ep in eps:
        xy = np.array([(m.pose.pose.position.x, m.pose.pose.position.y)
                       for t, m in topics['/odom'] if ep.start_ns <= t < ep.end_ns])
        if len(xy):
            far = max(far, float(np.hypot(*(xy - xy[0]).T).max()))
    return far


@pytest.mark.e2e
@pytest.mark.parametrize('experiment', ['widowx_hil_sim', 'roach_hil_sim'])
def test_hil_run_drives_the_emulated_robot_through_its_driver(experiment, tmp_path, ros_env):
    # Counted in the twin's sim time, driver reads and writes, states per stamp: not wall
    # seconds (the driver's rate is in bench/driver_node_rate.py and bench/drivers.py).
    run_dir = tmp_path / 'run'
    result, _ = run_until(experiment, run_dir, ros_env, enough_hil_run,
                          f'{SIM_S} s of twin time, {N_IO} driver reads and writes', cwd=REPO)
    assert healthy_or_stalled(result), result.stdout + result.stderr
    robot = yaml.safe_load((run_dir / 'spec.yaml').read_text())['robot']
    spec = load_robot_spec(robot)
    assert (run_dir / 'logs' / 'world.log').is_file()
    assert not (run_dir / 'dev' / Path(spec.driver['port']).name).exists()  # world stopped

    topics = read_bag(run_dir / 'bag')
    for topic in REQUIRED_TOPICS + (('/odom',) if robot == 'roach' else ()):
        assert topics.get(topic), f'{topic} missing from the bag of {experiment}'

    # joint_states: the driver's reads
    joints = joint_state_series(topics['/joint_states'])
    assert list(joints.names) == spec.joint_names
    assert np.all(np.diff(joints.stamps) > 0)

    # the world's task_state is stamped like a driver state: one state = both of one stamp
    # (the recorder may subscribe to task_state a little before joint_states)
    task = joint_state_series(topics['/task_state'])
    assert np.isin(task.stamps[task.stamps >= joints.stamps[0]], joints.stamps).all()
    # how many of them the world node and the recorder keep up with on a shared 2-core
    # machine (a 10-deep queue each) is load, not contract: the pairing above is the contract
    assert len(task) >= 0.6 * len(joints), (len(task), len(joints))
    assert len(topics['/reward']) >= 0.5 * len(joints), (len(topics['/reward']), len(joints))
    eps = episodes(topics)
    assert eps and all(ep.stamp_ns is not None for ep in eps)
    assert all(ep.stamp_ns in set(joints.stamps.tolist()) for ep in eps
               if ep.stamp_ns >= joints.stamps[0])
    assert np.all(split_states(joints, eps).position >= 0)

    # commands reached the emulated robot: the measured joints follow them, as in sim
    # (widowx_scripted_sim: range of every arm joint = commanded range, median error at the
    # best delay 2-4 % of it; roach_scripted_sim: leg speeds within 2 % of the range)
    assert answered_states(topics) >= N_IO // 3, answered_states(topics)
    position = spec.command_interface == 'position'
    command_t = np.array([t for t, _ in topics['/command']], dtype=np.int64)
    commands = np.array([command_values(m, spec.command_interface)
                         for _, m in topics['/command']])
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
        assert walked_m(topics) > 0.2                 # the body walked (sim: ~0.7 m in 12 s)

    # the driver stayed healthy: OK, no errors or faults. Commands older than the age budget
    # (0.5 s, the node's own real-time rule) are dropped: a CPU stall on a shared machine
    # makes a few; a clock or stamp mismatch would make most of them stale
    statuses = driver_statuses(topics, 'robot')
    assert statuses and statuses[-1]['level'] == 0, statuses[-1:]
    values = statuses[-1]['values']
    for key in ('read_errors', 'write_errors', 'faults'):
        assert values[key] == '0', (key, values)
    assert int(values['commands_stale']) < 0.1 * int(values['writes']), values
    assert min(int(values['reads']), int(values['writes'])) >= N_IO, values
    world = driver_statuses(topics, 'world')
    assert world and world[-1]['level'] == 0, world[-1:]


def wait_twin(world: HilWorld, seconds: float, keep_going=lambda: None) -> None:
    """Until the world's twin has simulated ``seconds`` more (``keep_going()`` meanwhile)."""
    until = world.observe().twin_time_s + seconds
    deadline = time.monotonic() + WAIT_S
    while world.observe().twin_time_s < until:
        assert time.monotonic() < deadline, f'the twin did not reach {until} s of sim time'
        keep_going()
        time.sleep(0.02)


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
            deadline = time.monotonic() + WAIT_S
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

            wait_twin(world, 0.4, lambda: driver.write(goal))     # legs turn ~8 rad more
            if command == 'legs':         # stopped, so that only a reset moves them back
                stop = np.zeros(2)
                wait_twin(world, 0.5, lambda: driver.write(stop))
                assert np.abs(driver.read().velocity).max() < 1.0, driver.read().velocity
            before_reset = driver.read().position

            world.request_reset(seed=5)
            deadline = time.monotonic() + WAIT_S
            while world.reset_pending and time.monotonic() < deadline:
                time.sleep(0.01)
            assert world.observe().resets == before.resets + 1
            # two twin periods of the reset pose, however long the machine takes for them
            wait_twin(world, 2 * spec.period_s)
            if command == 'legs':         # reply-mode telemetry: a record answers a command
                stamp = driver.read().stamp
                driver.write(stop)
                deadline = time.monotonic() + WAIT_S
                while driver.read().stamp == stamp and time.monotonic() < deadline:
                    time.sleep(0.01)
            state = driver.read()
            if command == 'waist':                        # the arm is back home ...
                assert abs(state.position[0]) < 0.02, state.position
                wait_twin(world, 0.5)
                assert abs(driver.read().position[0]) < 0.02    # ... and holds
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
