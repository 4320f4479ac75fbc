"""
End to end: `dexmpc up` on each twin as separate processes over DDS, checked on the bag.

These are the acceptance runs of the foundation: every node in its own process, real
Fast DDS on localhost, a real MCAP bag. Each test has its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dexmpc_ros.core.message_fields import command_values, stamp_to_ns
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.data.bag_reader import episodes, joint_state_series, read_bag, split_states
from dexmpc_run import answered_states, count, healthy_or_stalled, node_values, run_until

pytestmark = pytest.mark.e2e

REQUIRED_TOPICS = ('/joint_states', '/command_raw', '/command', '/diagnostics', '/task_state',
                   '/reward', '/episode', '/episode_start')


def dexmpc_up(experiment, run_dir, env, duration, *extra, wait=True):
    cmd = [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', experiment, '--duration',
           str(duration), '--output', str(run_dir), *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=duration + 90)


def assert_commands_within_limits(spec, commands):
    low, high = spec.limits_array('lower'), spec.limits_array('upper')
    vmax = spec.limits_array('velocity')
    assert commands, 'no command recorded'
    for _, msg in commands:
        assert list(msg.joint_names) == spec.command_names
        values = command_values(msg, spec.command_interface)
        assert values.shape == (len(spec.command_names),)
        assert np.all(np.isfinite(values))
        if spec.command_interface == 'position':
            assert np.all(values >= low - 1e-9) and np.all(values <= high + 1e-9), values
        else:
            assert np.all(np.abs(values) <= vmax + 1e-9), values


#: What a twin run must have done before it ends (however long a loaded machine takes):
#: simulated seconds, commands the supervisor let through, messages the recorder wrote.
SIM_S = 8.0
PASSED = 60
RECORDED = 300


def enough_twin_run(status: dict) -> bool:
    passed = count(status, 'safety', 'passed') + count(status, 'safety', 'clamped')
    return count(status, 'twin', 'sim_time_s') >= SIM_S and passed >= PASSED and \
        count(status, 'recorder', 'messages') >= RECORDED


def assert_one_state_per_twin_step(topics: dict, spec, eps) -> None:
    """
    Between the first and last twin diagnostics the bag holds one ``joint_states`` per
    twin step (sim time / control period), plus the first state of each new episode.
    """
    first_state = topics['/joint_states'][0][1]
    reports = [(t, float(v['sim_time_s'])) for t, v in node_values(topics, 'twin')
               if t > stamp_to_ns(first_state.header.stamp)]
    assert len(reports) >= 2, reports
    (t0, sim0), (t1, sim1) = reports[0], reports[-1]
    steps = round((sim1 - sim0) / spec.period_s)
    resets = sum(t0 < ep.stamp_ns <= t1 for ep in eps)
    states = sum(t0 < stamp_to_ns(m.header.stamp) <= t1 for _, m in topics['/joint_states'])
    assert steps >= 20, (steps, reports)
    # the recorder may miss a few (reliable, but a 10-deep publisher queue), never add any
    assert 0.9 * (steps + resets) <= states <= steps + resets, (states, steps, resets)


@pytest.mark.parametrize('experiment', ['widowx_scripted_sim', 'hand_random_walk_sim',
                                        'roach_scripted_sim'])
def test_twin_experiment_runs_and_records(experiment, tmp_path, ros_env):
    # Counted in sim time, twin steps and commands per state, not wall seconds: the twin
    # ticks on the wall clock, so a loaded machine steps it less often (the rates are in
    # bench/: safety.py, driver_node_rate.py).
    run_dir = tmp_path / 'run'
    result, _ = run_until(experiment, run_dir, ros_env, enough_twin_run,
                          f'{SIM_S} s of sim time, {PASSED} commands passed')
    assert healthy_or_stalled(result), result.stdout + result.stderr
    assert f'run folder: {run_dir}' in result.stdout
    assert (run_dir / 'spec.yaml').is_file() and (run_dir / 'logs' / 'twin.log').is_file()

    topics = read_bag(run_dir / 'bag')
    for topic in REQUIRED_TOPICS:
        assert topics.get(topic), f'{topic} missing from the bag of {experiment}'
    spec = load_robot_spec(load_spec_robot(run_dir))
    eps = episodes(topics)
    assert all(ep.stamp_ns is not None for ep in eps)
    assert_one_state_per_twin_step(topics, spec, eps)
    # commands answer states: stamped from the state they came from
    assert answered_states(topics) >= PASSED // 3, answered_states(topics)
    assert_commands_within_limits(spec, topics['/command'])
    # the robot moved: commands are not a constant hold
    first = command_values(topics['/command'][0][1], spec.command_interface)
    assert any(not np.allclose(command_values(m, spec.command_interface), first)
               for _, m in topics['/command'])
    # episodes split by header stamp: state stamps strictly increase, every state is at
    # or after the latched episode_start's stamp, and each episode_start stamped after
    # the first recorded state is the stamp of exactly one state, its reset state
    joints = joint_state_series(topics['/joint_states'])
    assert np.all(np.diff(joints.stamps) > 0)
    split = split_states(joints, eps)
    assert np.all(split.position >= 0)
    assert split.reset.sum() == sum(ep.stamp_ns >= joints.stamps[0] for ep in eps)
    if spec.name == 'roach':
        assert topics.get('/odom')
    if experiment == 'hand_random_walk_sim':   # camera: true, rendered offscreen at 2 Hz
        images = topics.get('/camera/color/image_raw')
        assert images and images[0][1].encoding == 'rgb8'


def load_spec_robot(run_dir):
    import yaml
    return yaml.safe_load((run_dir / 'spec.yaml').read_text())['robot']


def test_dead_node_is_named(tmp_path, ros_env):
    result = dexmpc_up('widowx_scripted_sim', tmp_path / 'run', ros_env, 20.0,
                       '--set', 'controller.policy=teleport')
    assert result.returncode == 1
    assert "node 'controller' died" in result.stderr
    assert 'teleport' in result.stderr


def test_sigint_stops_cleanly_with_a_readable_bag(tmp_path, ros_env):
    proc = dexmpc_up('roach_scripted_sim', tmp_path / 'run', ros_env, 120.0, '--quiet',
                     wait=False)
    # until the twin has stepped 4 s of sim time (40 states), however long start-up takes
    status = tmp_path / 'run' / 'status.jsonl'
    deadline = time.monotonic() + 120.0

    def twin_time_s() -> float:
        lines = status.read_text().splitlines() if status.exists() else []
        for line in reversed(lines):
            try:
                return float(json.loads(line)['nodes']['twin']['sim_time_s'])
            except (json.JSONDecodeError, KeyError):
                continue
        return 0.0
    while twin_time_s() < 4.0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    topics = read_bag(tmp_path / 'run' / 'bag')
    assert len(topics['/joint_states']) > 10
