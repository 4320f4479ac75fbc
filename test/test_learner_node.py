"""
Learner node over DDS: publishes the store's current model, and again after a rollback;
SIGINT during a training stops it cleanly and saves nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from std_msgs.msg import Int32, String  # noqa: E402
from test_mpc_node import tiny_checkpoint  # noqa: E402
from test_transitions import TwinRecording  # noqa: E402

from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.learning.store import CheckpointStore  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.learner_node import STOP_TIMEOUT_S  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from dexmpc_ros.runtime.cli import main as dexmpc  # noqa: E402
from dexmpc_ros.runtime.experiment import load_experiment, node_descriptions  # noqa: E402
from dexmpc_ros.runtime.ros_env import ros_environment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_dexmpc_up_gives_the_learner_the_run_folders(tmp_path):
    learner = next(d for d in node_descriptions(load_experiment('hand_pddm_valve_sim'),
                                                tmp_path) if d.kind == 'learner')
    assert learner.parameters['bag_dir'] == str(tmp_path / 'bag')
    assert learner.parameters['store_dir'] == str(tmp_path / 'models')


def start_learner(tmp_path: Path, ros_domain: int, bag_dir: Path, *params: str
                  ) -> tuple[subprocess.Popen, Path]:
    """The learner node for hand24 in its own process; returns it and its log file."""
    env = ros_environment(domain_id=ros_domain)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    log = tmp_path / 'learner.log'
    args = ['robot:=hand24', f'bag_dir:={bag_dir}', f'store_dir:={tmp_path / "store"}',
            *params]
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.learner_node', '--ros-args',
         *(word for arg in args for word in ('-p', arg))],
        env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
    return proc, log


def test_current_model_is_published_and_a_rollback_republished(tmp_path, ros_domain):
    store = CheckpointStore(tmp_path / 'store')
    for i, score in ((1, 1.0), (2, 0.5)):
        store.propose(tiny_checkpoint(store.next_path(), i), {'score': score})
    proc, log = start_learner(tmp_path, ros_domain, tmp_path / 'no_bag_yet', 'poll_s:=0.2')
    probe = GraphProbe(ros_domain, {}, name='learner_probe')
    got: list[str] = []
    latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_subscription(String, 'learner/checkpoint',
                                   lambda m: got.append(m.data), latched)
    try:
        probe.spin_until(lambda: got, 30.0, 'the current checkpoint')
        assert got[-1].endswith('ckpt-0002')
        assert dexmpc(['rollback', str(tmp_path / 'store')]) == 0
        probe.spin_until(lambda: got[-1].endswith('ckpt-0001'), 60.0, 'the rolled-back model')
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()


def test_sigint_during_training_stops_cleanly_and_saves_nothing(tmp_path, ros_domain):
    """
    SIGINT mid-training: exit code 0 within the stop timeout, no checkpoint, no history.

    6 episodes of a hand-twin bag and 100000 epochs (about 3 ms each): the training would
    run for minutes, so the stop lands between two epochs of a running fit.
    """
    bag = tmp_path / 'bag'
    TwinRecording(bag, load_robot_spec('hand24'), sim_time=False, seed=5).run(
        steps=60, episode_steps=10, reset_at=-1, skip=set())
    proc, log = start_learner(tmp_path, ros_domain, bag, 'first_after_episodes:=1',
                              'train.model.epochs:=100000', 'train.model.threads:=1')
    probe = GraphProbe(ros_domain, {'diagnostics': DiagnosticArray}, name='learner_probe')
    latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_publisher(Int32, 'episode', latched).publish(Int32(data=6))

    def epochs_done() -> int:
        values = [convert.diagnostic_values(status)
                  for _, msg in probe.received['diagnostics'] for status in msg.status
                  if status.name == 'learner']
        return max((int(v['epoch']) for v in values if v['training'] == 'True'), default=0)

    try:
        probe.spin_until(lambda: epochs_done() >= 5, 60.0, 'the learner training (epoch 5)')
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S + 10.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert 'exiting anyway' not in text, text   # the thread ended, not the join's timeout
    assert 'training abandoned at shutdown' in text and 'nothing saved' in text, text
    store = CheckpointStore(tmp_path / 'store')
    assert store.entries == [] and store.current() is None
    assert sorted(p.name for p in (tmp_path / 'store').iterdir()
                  if p.name.startswith('ckpt-')) == []
