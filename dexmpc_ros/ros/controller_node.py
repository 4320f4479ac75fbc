"""
Controller node: runs any registered controller at the control rate.

Reads ``joint_states`` (+ ``task_state``), calls ``controller.act(obs)`` on a timer and
publishes ``command_raw`` stamped with the observation it used; never ``command`` (only
the safety supervisor publishes that). A new ``episode`` resets the controller.
Controller parameters are declared as ``<policy>.<field>`` from the controller's config
dataclass (e.g. ``random_walk.vel_max``).
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Int32
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.control.registry import CONTROLLERS, make_controller
from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.types import Observation
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare


class ControllerNode(Node):
    """Adapter: joint_states/task_state -> controller.act -> command_raw."""

    def __init__(self) -> None:
        super().__init__('controller')
        self.spec = load_robot_spec(declare(self, 'robot', 'widowx', 'robot spec name or path'))
        policy = declare(self, 'policy', 'scripted',
                         f'controller to run: {", ".join(CONTROLLERS)}')
        rate = declare(self, 'rate_hz', 0.0, 'control rate [Hz]; 0 = the robot spec rate')
        if policy not in CONTROLLERS:
            raise ConfigError(f'node {self.get_name()}: policy {policy!r} unknown; available: '
                              f'{", ".join(CONTROLLERS)}')
        config_cls = CONTROLLERS[policy][1]
        config = config_from_node(self, config_cls, prefix=f'{policy}.')
        self.controller = make_controller(policy, self.spec, vars(config))
        self.policy = policy
        self.period_s = 1.0 / rate if rate > 0 else self.spec.period_s

        self._joints: JointState | None = None
        self._task: JointState | None = None
        self._rate = RateMeter()
        self.pub_command = self.create_publisher(JointTrajectory, 'command_raw', 10)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_subscription(JointState, 'joint_states', self._on_joints, 10)
        self.create_subscription(JointState, 'task_state', self._on_task, 10)
        self.create_subscription(Int32, 'episode', self._on_episode, QoSProfile(
            depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL))
        self.create_timer(self.period_s, self._tick)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f'{policy} controller for {self.spec.name} at '
                               f'{1.0 / self.period_s:g} Hz')

    def _on_joints(self, msg: JointState) -> None:
        self._joints = msg

    def _on_task(self, msg: JointState) -> None:
        self._task = msg

    def _on_episode(self, msg: Int32) -> None:
        self.controller.reset()
        self.get_logger().info(f'episode {msg.data}: controller reset')

    def _observation(self) -> Observation | None:
        if self._joints is None:
            return None
        try:
            return convert.observation(self._joints, self._task, self.spec.joint_names)
        except KeyError as exc:
            self.get_logger().error(f'bad joint_states: {exc}', throttle_duration_sec=1.0)
            return None

    def _tick(self) -> None:
        obs = self._observation()
        if obs is None:
            self.get_logger().warn('waiting for joint_states', throttle_duration_sec=2.0)
            return
        command = self.controller.act(obs)
        self.pub_command.publish(convert.command_msg(
            obs.stamp_ns, self.spec.command_names, command, self.spec.command_interface))
        self._rate.tick()

    def _publish_diagnostics(self) -> None:
        rate = self._rate.rate_hz()
        self.pub_diag.publish(
            'ok' if rate > 0 else 'warn',
            f'{self.policy} controller' if rate > 0 else 'waiting for joint_states',
            {'rate_hz': rate, 'commands': self._rate.count, 'policy': self.policy})


def main(args: list[str] | None = None) -> int:
    """Run the controller node."""
    return run_node(ControllerNode, args)


if __name__ == '__main__':
    sys.exit(main())
