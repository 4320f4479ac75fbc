"""
MPC node over real DDS (multi-process): plans on the hand twin through the supervisor,
publishes controller/plan and controller/uncertainty, hot-swaps a checkpoint published on
learner/checkpoint without missing a tick, refuses a corrupt one and keeps planning.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.core.state_layout import StateLayout  # noqa: E402
from dexmpc_ros.learning.checkpoint import save_checkpoint  # noqa: E402
from dexmpc_ros.learning.dynamics.model import DeltaDynamics  # noqa: E402
from dexmpc_ros.learning.dynamics.config import DynamicsConfig  # noqa: E402
from dexmpc_ros.robots.hand24.tasks import VALVE_STATE_NAMES  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.fault_trials import ensure_armed  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.experiment import load_experiment  # noqa: E402
from dexmpc_ros.runtime.runner import started  # noqa: E402

pytestmark = pytest.mark.e2e

EXPERIMENT = """\
description: hand twin, valve, MPC from a given checkpoint (test)
robot: hand24
backend: sim
duration_s: 30
nodes:
  twin: {{kind: robot, parameters: {{task: valve, seed: 0}}}}
  safety: {{kind: safety, parameters: {{auto_arm: true}}}}
  mpc:
    kind: mpc
    parameters: {{checkpoint: '{checkpoint}', samples: 64, horizon: 5, threads: 1}}
"""


def tiny_checkpoint(path, seed):
    spec = load_robot_spec('hand24')
    layout = StateLayout.for_robot(spec, VALVE_STATE_NAMES)
    rng = np.random.default_rng(seed)
    states = rng.standard_normal((200, layout.dim))
    model = DeltaDynamics(layout.dim, 20, DynamicsConfig(hidden=(32,), epochs=1, seed=seed))
    model.fit(states, rng.uniform(-1, 1, (200, 20)), states + 0.01)
    return save_checkpoint(path, model, {'state_names': list(layout.names),
                                         'action_names': spec.command_names,
                                         'robot': 'hand24'})


def test_mpc_node_plans_swaps_and_refuses(tmp_path, ros_domain):
    first = tiny_checkpoint(tmp_path / 'ckpt-1', 1)
    second = tiny_checkpoint(tmp_path / 'ckpt-2', 2)
    corrupt = tiny_checkpoint(tmp_path / 'ckpt-3', 3)
    weights = corrupt / 'model.safetensors'
    weights.write_bytes(weights.read_bytes()[:-8] + b'\x00' * 8)  # sha256 no longer matches
    yaml_path = tmp_path / 'mpc_test.yaml'
    yaml_path.write_text(EXPERIMENT.format(checkpoint=first))
    with started(load_experiment(yaml_path), tmp_path / 'run', ros_domain):
        probe = GraphProbe(ros_domain, {'command': JointTrajectory,
                                        'controller/plan': JointTrajectory,
                                        'controller/uncertainty': JointState},
                           name='mpc_probe')
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        pub = probe.node.create_publisher(String, 'learner/checkpoint', latched)
        diags = []
        probe.node.create_subscription(
            DiagnosticArray, 'diagnostics',
            lambda m: diags.extend(s for s in m.status if s.name == 'mpc'), 10)
        try:
            ensure_armed(probe)

            def planned_commands() -> int:
                plans = {convert.time_to_ns(m.header.stamp)
                         for _, m in probe.received['controller/plan']}
                return sum(convert.time_to_ns(m.header.stamp) in plans
                           for _, m in probe.received['command'])

            # the robot gets the plans' commands (stamped with their observation)
            probe.spin_until(lambda: planned_commands() >= 5, 20.0, '5 planned commands')
            plan = probe.received['controller/plan'][-1][1]
            assert len(plan.points) == 5 and len(plan.joint_names) == 24
            _, uncertainty = probe.received['controller/uncertainty'][-1]
            assert uncertainty.name[0] == 'uncertainty' and uncertainty.position[0] > 0

            pub.publish(String(data=str(second)))
            probe.spin_until(lambda: any(convert.diagnostic_values(d)['checkpoint']
                                         == str(second) for d in diags), 60.0, 'swap')
            pub.publish(String(data=str(corrupt)))
            probe.spin_until(lambda: any(int(convert.diagnostic_values(d)['refused']) == 1
                                         for d in diags), 60.0, 'refusal')
            count = len(probe.received['controller/plan'])  # still planning: 12 more plans
            probe.spin_until(lambda: len(probe.received['controller/plan']) - count >= 12,
                             60.0, '12 plans after the refusal')
            last = convert.diagnostic_values(diags[-1])
            assert last['checkpoint'] == str(second) and last['swaps'] == '2'
            assert 'sha256' in last['last_error']
            # a hot swap costs no tick (a stall elsewhere on a loaded machine may, and is
            # counted in missed_ticks; that is a timing figure, not this property)
            assert last['missed_in_swaps'] == '0', last
        finally:
            probe.close()
    log = (tmp_path / 'run' / 'logs' / 'mpc.log').read_text()
    assert 'checkpoint refused, keeping the current model' in log
    assert json.loads((first / 'manifest.json').read_text())['robot'] == 'hand24'


def test_pddm_loop_explores_learns_and_plans_unattended(tmp_path, ros_env):
    """hand_pddm_valve_sim, shrunk: explore, train, swap, retrain, all through the supervisor."""
    import subprocess
    import sys

    from dexmpc_ros.data.bag_reader import read_bag
    from dexmpc_ros.learning.store import CheckpointStore
    from dexmpc_ros.core.message_fields import command_values
    from dexmpc_ros.ros.fault_trials import joint_arrays
    from dexmpc_ros.safety.audit import audit

    run_dir = tmp_path / 'run'
    result = subprocess.run(
        [sys.executable, '-m', 'dexmpc_ros.runtime.cli', 'up', 'hand_pddm_valve_sim',
         '--duration', '30', '--output', str(run_dir), '--quiet',
         '--set', 'twin.episode_steps=10', '--set', 'learner.first_after_episodes=3',
         '--set', 'learner.every_episodes=3', '--set', 'learner.train.model.epochs=5',
         '--set', 'learner.train.model.hidden=[64]', '--set', 'mpc.samples=64',
         # As shipped: twin in lockstep (at most 2x real time), mpc answering every state.
         ],
        env=ros_env, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = CheckpointStore(run_dir / 'models')
    accepted = [e for e in store.entries if e.accepted]
    assert len(store.entries) >= 3 and len(accepted) >= 1, [e.reason for e in store.entries]
    mpc_log = (run_dir / 'logs' / 'mpc.log').read_text()
    assert mpc_log.count('now planning with') >= 1
    status = json.loads((run_dir / 'status.jsonl').read_text().splitlines()[-1])
    mpc = status['nodes']['mpc']
    twin = status['nodes']['twin']
    assert mpc['exploring'] == 'False' and float(twin['sim_time_s']) > 10.0, (mpc, twin)
    # Lockstep: (nearly) every state answered before the twin stepped on. Before lockstep,
    # watchdog holds cost ~15 % of the ticks; on a CI machine busy with other tests a few
    # stalls remain (their count is a timing figure: bench and report, not here).
    applied = int(twin['commands_applied'])
    assert int(twin['lockstep_timeouts']) <= 0.03 * applied, twin
    assert int(mpc['missed_ticks']) <= 0.03 * applied, mpc
    assert float(mpc['plan_ms_p50']) > 0
    spec = load_robot_spec('hand24')
    bag = read_bag(run_dir / 'bag', ['/joint_states', '/command', '/controller/plan'])
    assert len(bag['/controller/plan']) > 50
    _, pos, vel = joint_arrays(bag['/joint_states'], spec)
    commands = np.array([command_values(m, spec.command_interface)
                         for _, m in bag['/command']])
    assert audit(spec, pos, vel, commands).total == 0
