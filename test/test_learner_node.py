"""Learner node over DDS: publishes the store's current model, and again after a rollback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

from rclpy.qos import QoSDurabilityPolicy, QoSProfile  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from test_mpc_node import tiny_checkpoint  # noqa: E402

from dexmpc_ros.models.store import CheckpointStore  # noqa: E402
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


def test_current_model_is_published_and_a_rollback_republished(tmp_path, ros_domain):
    store = CheckpointStore(tmp_path / 'store')
    for i, score in ((1, 1.0), (2, 0.5)):
        store.propose(tiny_checkpoint(store.next_path(), i), {'score': score})
    env = ros_environment(domain_id=ros_domain)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    log = tmp_path / 'learner.log'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'dexmpc_ros.ros.learner_node', '--ros-args', '-p',
         'robot:=hand24', '-p', f'bag_dir:={tmp_path / "no_bag_yet"}', '-p',
         f'store_dir:={tmp_path / "store"}', '-p', 'poll_s:=0.2'],
        env=env, stdout=log.open('w'), stderr=subprocess.STDOUT)
    probe = GraphProbe(ros_domain, {}, name='learner_probe')
    got: list[str] = []
    latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_subscription(String, 'learner/checkpoint',
                                   lambda m: got.append(m.data), latched)
    try:
        probe.spin_until(lambda: got, 30.0, 'the current checkpoint')
        assert got[-1].endswith('ckpt-0002')
        assert dexmpc(['rollback', str(tmp_path / 'store')]) == 0
        probe.spin_until(lambda: got[-1].endswith('ckpt-0001'), 5.0, 'the rolled-back model')
    finally:
        probe.close()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()
