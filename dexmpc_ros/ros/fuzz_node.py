"""
Fuzz node: a hostile controller publishing ``safety.fuzz`` commands on ``command_raw``.

For fault injection only (``*_fuzz_sim`` experiments, ``bench/safety.py``, the safety
tests): it reads ``joint_states`` so some commands are plausible, and publishes
``fuzz.burst`` commands back to back every ``burst / rate_hz`` seconds. Its diagnostics
count the commands sent per kind.
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.safety.fuzz import CommandFuzzer, FuzzConfig
from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare


class FuzzNode(Node):
    """Adapter: joint_states -> CommandFuzzer -> command_raw (bursts)."""

    def __init__(self) -> None:
        super().__init__('fuzz')
        self.spec = load_robot_spec(declare(self, 'robot', 'widowx', 'robot spec name or path'))
        config = config_from_node(self, FuzzConfig, prefix='fuzz.')
        self.fuzzer = CommandFuzzer(self.spec, config)
        self._interface = self.spec.command_interface
        self._measured = None
        self._obs_stamp_ns = 0
        self._rate = RateMeter()
        self.pub_command = self.create_publisher(JointTrajectory, 'command_raw', 100)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_subscription(JointState, 'joint_states', self._on_joints, 10)
        self.create_timer(config.burst / config.rate_hz, self._tick)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().warn(f'HOSTILE controller for {self.spec.name}: {config.rate_hz:g} '
                               f'commands/s in bursts of {config.burst}')

    def _on_joints(self, msg: JointState) -> None:
        try:
            position, velocity, _ = convert.joint_state_to_arrays(msg, self.spec.joint_names)
        except KeyError:
            return
        measured = position if self._interface == 'position' else velocity
        self._measured = measured[self.spec.actuated_index]
        self._obs_stamp_ns = convert.time_to_ns(msg.header.stamp)

    def _tick(self) -> None:
        if self._measured is None:
            return
        now = self.get_clock().now().nanoseconds
        for _ in range(self.fuzzer.config.burst):
            cmd = self.fuzzer.next(self._measured, self._obs_stamp_ns, now)
            # any length and any value, even bad ones: command_msg checks neither
            msg = convert.command_msg(cmd.stamp_ns, cmd.names, cmd.values, self._interface)
            self.pub_command.publish(msg)
            self._rate.tick()

    def _publish_diagnostics(self) -> None:
        values = {'rate_hz': self._rate.rate_hz(), 'commands': self._rate.count,
                  **{f'kind/{k}': n for k, n in self.fuzzer.counts.items()}}
        self.pub_diag.publish('warn', 'hostile controller', values)


def main(args: list[str] | None = None) -> int:
    """Run the fuzz node."""
    return run_node(FuzzNode, args)


if __name__ == '__main__':
    sys.exit(main())
