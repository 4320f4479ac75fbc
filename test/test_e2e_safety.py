"""
End to end, safety: an outside rclpy node attacks `command_raw` and pulls the e-stop
while `dexmpc up` runs the WidowX twin; assertions on `command`, on the twin's
measured joints and on the run's exit status (3: it ended e-stopped).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Int32  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.message_fields import command_values  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.data.bag_reader import read_bag  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros import fault_trials  # noqa: E402
from dexmpc_ros.ros.fault_trials import first_hold  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.experiment import load_experiment  # noqa: E402
from dexmpc_ros.runtime.run_health import EXIT_UNHEALTHY  # noqa: E402

pytestmark = pytest.mark.e2e

#: Twin steps the arm gets to settle on the e-stop's hold (0.5 s of sim time at 20 Hz).
SETTLE_STEPS = 10
#: Twin steps after the settling in which the arm must stay still.
STILL_STEPS = 30


def attacks(spec, now_ns):
    """Hostile commands: NaN, inf, huge, wrong length, unknown names."""
    names = spec.command_names
    m = len(names)
    nan = np.zeros(m)
    nan[1] = np.nan
    inf = np.zeros(m)
    inf[0] = np.inf
    yield convert.command_msg(now_ns, names, nan, 'position')
    yield convert.command_msg(now_ns, names, inf, 'position')
    yield convert.command_msg(now_ns, names, np.full(m, 1e6), 'position')
    yield convert.command_msg(now_ns, names, -np.full(m, 1e6), 'position')
    yield convert.command_msg(now_ns, names[:-1], np.zeros(m - 1), 'position')
    yield convert.command_msg(now_ns, names[:-1] + ['laser_cannon'], np.zeros(m), 'position')


def test_attacks_never_reach_robot_and_estop_stops_joints(tmp_path, ros_env, ros_domain):
    spec = load_robot_spec('widowx')
    low, high = spec.limits_array('lower'), spec.limits_array('upper')
    t_started_ns = time.time_ns()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', 'widowx_scripted_sim',
         '--duration', '300', '--output', str(tmp_path / 'run'), '--quiet'],
        env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    probe = GraphProbe(ros_domain, {'command': JointTrajectory, 'joint_states': JointState,
                                    'episode': Int32})
    watched = SETTLE_STEPS + STILL_STEPS + 5
    commands = probe.received['command']
    try:
        probe.spin_until(lambda: len(commands) >= 20, 120.0, '20 commands from the graph')
        for _ in range(20):                                   # 2 s of attacks at 10 Hz
            for msg in attacks(spec, time.time_ns()):
                probe.pub_raw.publish(msg)
            probe.spin_for(0.1)
        probe.spin_for(0.5)
        for _, msg in commands:
            values = command_values(msg, 'position')
            assert list(msg.joint_names) == spec.command_names
            assert np.all(np.isfinite(values))
            assert np.all(values >= low - 1e-9) and np.all(values <= high + 1e-9)

        # no twin episode reset (a teleport) inside the watch
        fault_trials.clear_of_episode_end(
            probe, fault_trials.episode_seconds(load_experiment('widowx_scripted_sim'), spec),
            watched * spec.period_s)
        t_estop_ns = probe.estop(True)
        # When the supervisor started holding: its first command stamped after the e-stop.
        # Then watch a number of twin steps (a loaded machine takes longer, not fewer).
        probe.spin_until(lambda: first_hold(probe, t_estop_ns) is not None, 30.0,
                         'a hold after the e-stop')
        hold_start_ns, hold_msg = first_hold(probe, t_estop_ns)
        hold_stamp_ns = convert.time_to_ns(hold_msg.header.stamp)
        states = probe.received['joint_states']
        probe.spin_until(lambda: sum(t > hold_start_ns for t, _ in states) >= watched,
                         60.0, f'{watched} twin steps after the hold')
        # every command from the hold on is the hold: all identical
        held = [np.asarray(m.points[0].positions) for t, m in commands if t >= hold_start_ns]
        assert held and all(np.allclose(h, held[0]) for h in held)
        listened_until_ns = fault_trials.next_episode_ns(probe, hold_start_ns, spec) \
            or time.time_ns()
    finally:
        probe.close()
        t_stopped_ns = time.time_ns()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    # The run ended e-stopped: `dexmpc up` says so and exits 3 (README "Run exit status").
    assert proc.returncode == EXIT_UNHEALTHY, out + err
    reason = re.search(r'safety e-stopped at ([0-9.]+) s: estop: e-stop received '
                       r'\(still e-stopped at the end\)', err)
    assert reason, err
    assert 'FAILED (exit 3): robot not healthy' in err
    # seconds since the run started: after the 20 commands and the 2 s of attacks
    assert 2.0 < float(reason.group(1)) < (t_stopped_ns - t_started_ns) * 1e-9, err
    # The twin's measured joints, from the bag. The arm settles on the hold for SETTLE_STEPS
    # twin steps (counted in steps, i.e. sim time: a twin slowed by CPU load gets as many),
    # then must stay still. States are picked by their stamps, after the observation the
    # first hold was computed from: the recorder's receive times lag by its queue, so a
    # state received after the hold may have been measured before it.
    joints = read_bag(tmp_path / 'run' / 'bag', ['/joint_states'])['/joint_states']
    after_hold = [convert.joint_state_to_arrays(m, spec.joint_names)[0]
                  for t, m in joints if convert.time_to_ns(m.header.stamp) > hold_stamp_ns
                  and t < listened_until_ns]
    settled = after_hold[SETTLE_STEPS:]
    assert len(settled) >= STILL_STEPS, (len(after_hold), len(states))
    motion = np.ptp(np.stack(settled), axis=0)
    assert np.all(motion[:6] < 0.01), f'arm joints still moving after e-stop: {motion}'
