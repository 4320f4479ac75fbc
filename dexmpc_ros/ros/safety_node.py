"""
Safety node: the only publisher of ``command``; a thin adapter around ``safety.Supervisor``.

Subscribes ``command_raw`` (controllers), ``joint_states`` (driver/twin) and
``safety/estop``; serves ``safety/reset`` and ``safety/arm`` (std_srvs/Trigger).
A command that passes (or is clamped) is published from the subscription callback itself,
with the stamp of the observation it came from, so the filter adds no timer hop. A
watchdog timer at the control rate publishes hold commands (stamped now) when one is due.
All times are node time, so ``use_sim_time`` works.
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

#: Number of recent filter calls whose latency the diagnostics summarise.
LATENCY_WINDOW = 200


class SafetyNode(Node):
    """Adapter: command_raw + joint_states + safety/estop -> Supervisor -> command."""

    def __init__(self) -> None:
        super().__init__('safety')
        self.spec = load_robot_spec(declare(
            self, 'robot', 'widowx', 'robot spec name (config/robots/<name>.yaml) or YAML path'))
        self.supervisor = Supervisor(self.spec, config_from_node(self, SupervisorConfig))
        self._names = self.spec.command_names
        self._interface = self.spec.command_interface
        self._rate = RateMeter()
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_WINDOW)
        self._rule_counts_seen = dict(self.supervisor.rule_counts)

        self.pub_command = self.create_publisher(JointTrajectory, 'command', 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, 'diagnostics', 10)
        self.create_subscription(JointTrajectory, 'command_raw', self._on_command, 10)
        self.create_subscription(JointState, 'joint_states', self._on_joint_states, 10)
        self.create_subscription(Bool, 'safety/estop', self._on_estop, 10)
        self.create_service(Trigger, 'safety/reset', self._on_reset)
        self.create_service(Trigger, 'safety/arm', self._on_arm)
        self.create_timer(self.spec.period_s, self._watchdog)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'safety for {self.spec.name} ({self._interface}, {len(self._names)} joints), '
            f'{self.supervisor.state.value}, watchdog {self.supervisor.watchdog_ns * 1e-6:.0f} ms')

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # Inputs ------------------------------------------------------------------------------
    def _on_command(self, msg: JointTrajectory) -> None:
        names, values, stamp_ns = convert.command_to_arrays(msg, self._interface)
        start = time.perf_counter_ns()
        decision = self.supervisor.on_command(names, values, stamp_ns, self._now_ns())
        self._latency_ns.append(time.perf_counter_ns() - start)
        if decision.values is not None:
            self._publish(stamp_ns, decision.values)
        if decision.fired:
            self.get_logger().warn(f'{decision.action}: {decision.reason}',
                                   throttle_duration_sec=1.0)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            position, velocity, _ = convert.joint_state_to_arrays(msg, self.spec.joint_names)
        except KeyError as exc:
            self.get_logger().error(f'ignoring joint_states: {exc}', throttle_duration_sec=1.0)
            return
        self.supervisor.on_state(position, velocity, convert.time_to_ns(msg.header.stamp))

    def _on_estop(self, msg: Bool) -> None:
        was = self.supervisor.state
        self.supervisor.on_estop(msg.data, self._now_ns())
        if self.supervisor.state is SafetyState.ESTOPPED and was is not SafetyState.ESTOPPED:
            self.get_logger().error('E-STOP: holding until safety/reset')
            self._watchdog()  # hold now rather than at the next timer tick

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        response.success, response.message = self.supervisor.reset(self._now_ns())
        self._log_service('reset', response)
        return response

    def _on_arm(self, request: Trigger.Request, response: Trigger.Response
                ) -> Trigger.Response:
        response.success, response.message = self.supervisor.arm(self._now_ns())
        self._log_service('arm', response)
        return response

    def _log_service(self, name: str, response: Trigger.Response) -> None:
        log = self.get_logger().info if response.success else self.get_logger().warn
        log(f'safety/{name}: {response.message}')

    # Outputs -----------------------------------------------------------------------------
    def _watchdog(self) -> None:
        now = self._now_ns()
        hold = self.supervisor.tick(now)
        if hold is not None:
            self._publish(now, hold)
        elif self.supervisor.holding_due(now):
            self.get_logger().warn(self.supervisor.last_reason, throttle_duration_sec=2.0)

    def _publish(self, stamp_ns: int, values: np.ndarray) -> None:
        self.pub_command.publish(
            convert.command_msg(stamp_ns, self._names, values, self._interface))
        self._rate.tick()

    def _publish_diagnostics(self) -> None:
        stats = self.supervisor.stats()
        counts = self.supervisor.rule_counts
        recent = sorted(r for r, c in counts.items() if c > self._rule_counts_seen[r])
        self._rule_counts_seen = dict(counts)
        latency_us = (float(np.median(self._latency_ns)) * 1e-3 if self._latency_ns
                      else 0.0)
        now = self._now_ns()
        stamp = self.supervisor.measured_stamp_ns
        state_age_s = (now - stamp) * 1e-9 if stamp is not None else float('inf')
        values = {'rate_hz': self._rate.rate_hz(), **stats, 'latency_us': latency_us,
                  'state_age_s': state_age_s, 'watchdog_s': self.supervisor.watchdog_ns * 1e-9}
        problems = []
        if stamp is None:
            problems.append('waiting for joint_states')
        elif state_age_s > self.supervisor.config.state_timeout_s:
            problems.append(f'joint_states stale ({state_age_s:.2f} s old)')
        if recent:
            problems.append(f'rules fired: {", ".join(recent)}')
        state = self.supervisor.state
        if state is SafetyState.ESTOPPED:
            level, message = 'error', '; '.join(['E-STOPPED: holding until safety/reset',
                                                 *problems])
        elif problems:
            level, message = 'warn', '; '.join(problems)
        else:
            level, message = 'ok', 'holding' if stats['holding'] else state.value.lower()
        status = convert.diagnostic_status(self.get_name(), level, message, values)
        self.pub_diag.publish(DiagnosticArray(header=convert.header(now), status=[status]))


def main(args: list[str] | None = None) -> int:
    """Run the safety node."""
    return run_node(SafetyNode, args)


if __name__ == '__main__':
    sys.exit(main())
