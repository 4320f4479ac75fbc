"""
Hand driver node over real DDS: the node is its own process; this test plays the hand's
ros2_control side (publishes Shadow-named ``hand/joint_states``, reads the controller's
``commands`` / ``joint_trajectory``) and the safety supervisor (publishes ``command``,
listens on ``safety/estop``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from dexmpc_ros.core.message_fields import command_values, stamp_to_ns  # noqa: E402
from dexmpc_ros.core.robot_spec import load_robot_spec  # noqa: E402
from dexmpc_ros.ros import convert  # noqa: E402
from dexmpc_ros.ros.probe import GraphProbe  # noqa: E402
from node_process import start_node as start_node_process, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = load_robot_spec('hand24')
HW = SPEC.driver['joint_names']                      # spec joint -> rh_ joint
COUPLED = {f'rh_{f}J0': f'{f}J2' for f in ('FF', 'MF', 'RF', 'LF')}
# A forward position controller over the hand's names, with the real hand's virtual J0
# instead of each finger's J2, listed in reverse so order mistakes show.
FORWARD_JOINTS = [next((v for v, j2 in COUPLED.items() if j2 == name), HW[name])
                  for name in reversed(SPEC.command_names)]
TIMEOUT_S = 0.3


def start_node(tmp_path: Path, ros_env: dict, **params) -> tuple[subprocess.Popen, Path]:
    controllers = tmp_path / 'controllers.yaml'
    controllers.write_text(yaml.safe_dump({
        'rh_position_group': {'ros__parameters': {'joints': FORWARD_JOINTS,
                                                  'interface_name': 'position'}}}))
    params = {'controllers_file': str(controllers), 'state_timeout_s': TIMEOUT_S, **params}
    return start_node_process('dexmpc_ros.ros.hand_driver_node', tmp_path, ros_env, params,
                              'hand.log')


class Hand(GraphProbe):
    """ros2_control (joint_state_broadcaster + one controller) and the supervisor."""

    def __init__(self, domain: int, controller_topic: str, controller_type: type) -> None:
        super().__init__(domain, {'joint_states': JointState, 'diagnostics': DiagnosticArray,
                                  'safety/estop': Bool, controller_topic: controller_type},
                         name='hand_test')
        self.controller_topic = controller_topic
        self.pub_hand = self.node.create_publisher(JointState, 'hand/joint_states', 10)
        self.pub_command = self.node.create_publisher(JointTrajectory, 'command', 10)
        # Shadow names, shuffled; position of spec joint k = 0.01 k + 0.1 (distinct values).
        rng = np.random.default_rng(3)
        self.hw_names = [HW[n] for n in SPEC.joint_names]
        self.order = rng.permutation(len(self.hw_names))
        self.expected = 0.1 + 0.01 * np.arange(len(self.hw_names))
        self.streaming = True
        self.node.create_timer(0.02, self._publish_hand)

    def _publish_hand(self) -> None:
        if self.streaming:
            self.pub_hand.publish(convert.joint_state_msg(
                self.node.get_clock().now().nanoseconds,
                [self.hw_names[i] for i in self.order], self.expected[self.order],
                np.zeros(len(self.order))))

    def connect(self, proc: subprocess.Popen, log: Path) -> None:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return self.pub_command.get_subscription_count() > 0 and \
                bool(self.received['joint_states'])
        self.spin_until(ready, 20.0, 'the hand driver node')

    def send(self, values: np.ndarray) -> None:
        self.pub_command.publish(convert.command_msg(
            self.node.get_clock().now().nanoseconds, SPEC.command_names, values, 'position'))

    def wait_controller_message(self):
        self.received[self.controller_topic].clear()
        self.spin_until(lambda: self.received[self.controller_topic], 60.0,
                        self.controller_topic)
        return self.received[self.controller_topic][0][1]

    def statuses(self) -> list[DiagnosticStatus]:
        return [s for _, m in self.received['diagnostics'] for s in m.status
                if s.name == 'hand_driver']


COMMAND = 0.05 + 0.02 * np.arange(len(SPEC.command_names))   # distinct targets [rad]


def test_forward_mode_maps_names_and_coupling_and_silence_estops(
        tmp_path, ros_env, ros_domain):
    proc, log = start_node(tmp_path, ros_env, controller='rh_position_group',
                           command_mode='forward')
    hand = Hand(ros_domain, 'rh_position_group/commands', Float64MultiArray)
    try:
        hand.connect(proc, log)
        # Shadow-named, shuffled state -> the twin's names and order, same values.
        msg = hand.received['joint_states'][-1][1]
        assert list(msg.name) == SPEC.joint_names
        np.testing.assert_allclose(msg.position, hand.expected)

        hand.send(COMMAND)
        data = np.asarray(hand.wait_controller_message().data)
        assert len(data) == len(FORWARD_JOINTS) == 20
        target = dict(zip(SPEC.command_names, COMMAND))
        for joint, value in zip(FORWARD_JOINTS, data):
            if joint in COUPLED:                       # J0 = J1 + J2 = 2 x the J2 target
                assert value == pytest.approx(2 * target[COUPLED[joint]]), joint
            else:
                assert value == pytest.approx(target[joint[3:]]), joint
        assert data[FORWARD_JOINTS.index('rh_FFJ0')] == pytest.approx(2 * target['FFJ2'])
        assert data[FORWARD_JOINTS.index('rh_WRJ2')] == pytest.approx(target['WRJ2'])

        # A command for the wrong joints is not forwarded.
        hand.received['rh_position_group/commands'].clear()
        hand.pub_command.publish(convert.command_msg(
            hand.node.get_clock().now().nanoseconds, SPEC.command_names[:5], COMMAND[:5],
            'position'))
        hand.spin_until(lambda: any(convert.diagnostic_values(s)['commands_malformed'] == '1'
                                    for s in hand.statuses()), 60.0, 'malformed counted')
        assert hand.received['rh_position_group/commands'] == []

        # The controller manager goes silent: one e-stop request and an ERROR diagnostic.
        hand.streaming = False
        hand.spin_until(lambda: hand.received['safety/estop'], 60.0, 'safety/estop')
        hand.spin_until(lambda: any(s.level == DiagnosticStatus.ERROR and
                                    'silent controller' in s.message
                                    for s in hand.statuses()), 60.0, 'silent diagnostics')
        hand.spin_for(3 * TIMEOUT_S)
        assert [m.data for _, m in hand.received['safety/estop']] == [True]
        # It comes back: diagnostics OK again, no further e-stop traffic.
        hand.received['diagnostics'].clear()
        hand.streaming = True
        hand.spin_until(lambda: any(s.level == DiagnosticStatus.OK
                                    for s in hand.statuses()), 60.0, 'diagnostics OK')
        assert [m.data for _, m in hand.received['safety/estop']] == [True]
    finally:
        hand.close()
        code = stop(proc)
    assert code == 0, log.read_text()


def test_trajectory_mode_names_all_24_hand_joints(tmp_path, ros_env, ros_domain):
    # Shadow's rh_trajectory_controller is not in the controllers file: its 24 rh_* joints.
    proc, log = start_node(tmp_path, ros_env, point_time_s=0.25)
    hand = Hand(ros_domain, 'rh_trajectory_controller/joint_trajectory', JointTrajectory)
    try:
        hand.connect(proc, log)
        hand.send(COMMAND)
        msg = hand.wait_controller_message()
        assert list(msg.joint_names) == [HW[n] for n in SPEC.joint_names]
        assert len(msg.points) == 1 and convert.time_to_ns(msg.header.stamp) == 0
        assert stamp_to_ns(msg.points[0].time_from_start) == 250_000_000
        position = dict(zip(msg.joint_names, command_values(msg, 'position')))
        target = dict(zip(SPEC.command_names, COMMAND))
        for finger in ('FF', 'MF', 'RF', 'LF'):          # J1 = J2 = the J2 target
            assert position[f'rh_{finger}J1'] == pytest.approx(target[f'{finger}J2'])
            assert position[f'rh_{finger}J2'] == pytest.approx(target[f'{finger}J2'])
        assert position['rh_THJ1'] == pytest.approx(target['THJ1'])
    finally:
        hand.close()
        code = stop(proc)
    assert code == 0, log.read_text()


def test_absent_hand_exits_with_an_actionable_message(tmp_path, ros_env):
    """No hand joint_states at all after start-up: exit 1 naming the topic and what to check."""
    proc, log = start_node(tmp_path, ros_env, first_state_timeout_s=1.0)
    try:
        code = proc.wait(timeout=30)
    finally:
        stop(proc)
    text = log.read_text()
    assert code == 1, text
    assert 'no Shadow hand joint_states on /hand/joint_states' in text, text
    assert 'list_controllers' in text and 'Traceback' not in text, text
