"""
Safety node: the only publisher of ``command``; a thin adapter around ``safety.Supervisor``.

Subscribes ``command_raw`` (controllers), ``joint_states`` (driver/twin), ``safety/estop``;
for robots with body-rate limits ``odom`` and ``imu``; when the hooks are on,
``controller/plan`` (JointTrajectory of predicted positions) and ``controller/uncertainty``
(named stamped vector with an ``uncertainty`` entry). Serves ``safety/arm`` and
``safety/reset`` (std_srvs/Trigger); publishes ``safety/state`` (std_msgs/String, latched)
on every state change and ``diagnostics`` once a second.

A command that passes (or is clamped) is published from the subscription callback itself,
with the stamp of the observation it came from, so the filter adds no timer hop. The
heartbeat/watchdog check runs at four times the control rate; the first hold goes out as
soon as it is due, later ones once per control period, stamped now. All times are node
time, so ``use_sim_time`` works.
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare
from dexmpc_ros.safety.supervisor import SafetyState, Supervisor, SupervisorConfig

#: Number of recent filter calls whose latency the diagnostics summarise.
LATENCY_WINDOW = 1000
#: Watchdog checks per control period (hold detection delay <= period / this).
CHECKS_PER_PERIOD = 4


class SafetyNode(Node):
    """Adapter: command_raw + joint_states + safety/estop (+ hooks) -> Supervisor -> command."""

    def __init__(self) -> None:
        super().__init__('safety')
        self.spec = load_robot_spec(declare(
            self, 'robot', 'widowx', 'robot spec name (config/robots/<name>.yaml) or YAML path'))
        self.supervisor = sup = Supervisor(self.spec, config_from_node(self, SupervisorConfig))
        self._names = self.spec.command_names
        self._interface = self.spec.command_interface
        self._rate = RateMeter()
        self._latency_ns: deque[int] = deque(maxlen=LATENCY_WINDOW)
        self._rule_counts_seen = dict(sup.rule_counts)
        self._last_hold_ns: int | None = None
        self._holds_sent = 0
        self._published_state: SafetyState | None = None

        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_command = self.create_publisher(JointTrajectory, 'command', 10)
        self.pub_state = self.create_publisher(String, 'safety/state', latched)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_subscription(JointTrajectory, 'command_raw', self._on_command, 10)
        self.create_subscription(JointState, 'joint_states', self._on_joint_states, 10)
        self.create_subscription(Bool, 'safety/estop', self._on_estop, 10)
        if sup.limits.body_rate is not None:
            self.create_subscription(Odometry, 'odom', self._on_odom, 10)
            self.create_subscription(Imu, 'imu', self._on_imu, 10)
        if sup.config.check_plan:
            self.create_subscription(JointTrajectory, 'controller/plan', self._on_plan, 10)
        if sup.settings.gate_uncertainty:
            self.create_subscription(JointState, 'controller/uncertainty',
                                     self._on_uncertainty, 10)
        self.create_service(Trigger, 'safety/reset', self._on_reset)
        self.create_service(Trigger, 'safety/arm', self._on_arm)
        self.create_timer(self.spec.period_s / CHECKS_PER_PERIOD, self._watchdog)
        self.create_timer(1.0, self._publish_diagnostics)
        self._publish_state_change()
        hooks = [name for name, on in (('plan', sup.config.check_plan),
                                       ('uncertainty', sup.settings.gate_uncertainty)) if on]
        self.get_logger().info(
            f'safety for {self.spec.name} ({self._interface}, {len(self._names)} joints), '
            f'{sup.state.value}{" (auto-arm)" if sup.config.auto_arm else ""}, watchdog '
            f'{sup.watchdog_ns * 1e-6:.0f} ms, hooks: {", ".join(hooks) or "none"}')

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
        elif self.supervisor.holding_due(self._now_ns()):
            self._watchdog()  # a forcing rejection (stale state, plan, ...): hold at once
        if decision.fired:
            self.get_logger().warn(f'{decision.action}: {decision.reason}',
                                   throttle_duration_sec=1.0)

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            position, velocity, effort = convert.joint_state_to_arrays(
                msg, self.spec.joint_names)
        except KeyError as exc:
            self.get_logger().error(f'ignoring joint_states: {exc}', throttle_duration_sec=1.0)
            return
        self.supervisor.on_state(position, velocity, convert.time_to_ns(msg.header.stamp),
                                 effort if np.isfinite(effort).any() else None, self._now_ns())
        self._publish_state_change()

    def _on_odom(self, msg: Odometry) -> None:
        angular = convert.odometry_to_arrays(msg)[3]
        self.supervisor.on_body_rate(angular, convert.time_to_ns(msg.header.stamp))

    def _on_imu(self, msg: Imu) -> None:
        self.supervisor.on_body_rate(*convert.imu_angular_velocity(msg))

    def _on_plan(self, msg: JointTrajectory) -> None:
        verdict = self.supervisor.on_plan(*convert.plan_to_arrays(msg))
        if verdict:
            self.get_logger().warn(f'plan rejected: {verdict}', throttle_duration_sec=1.0)

    def _on_uncertainty(self, msg: JointState) -> None:
        names, values = convert.named_vector(msg)
        if 'uncertainty' not in names:
            self.get_logger().error('controller/uncertainty lacks an "uncertainty" entry',
                                    throttle_duration_sec=2.0)
            return
        self.supervisor.on_uncertainty(values[names.index('uncertainty')],
                                       convert.time_to_ns(msg.header.stamp))

    def _on_estop(self, msg: Bool) -> None:
        self.supervisor.on_estop(msg.data, self._now_ns())
        if self._publish_state_change():
            self.get_logger().error('E-STOP: holding until safety/reset')
            self._watchdog()  # hold now rather than at the next timer tick

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        response.success, response.message = self.supervisor.reset(self._now_ns())
        return self._answer('reset', response)

    def _on_arm(self, request: Trigger.Request, response: Trigger.Response
                ) -> Trigger.Response:
        response.success, response.message = self.supervisor.arm(self._now_ns())
        return self._answer('arm', response)

    def _answer(self, name: str, response: Trigger.Response) -> Trigger.Response:
        # one call site per severity: rclpy refuses a second severity from the same line
        if response.success:
            self.get_logger().info(f'safety/{name}: {response.message}')
        else:
            self.get_logger().warn(f'safety/{name}: {response.message}')
        self._publish_state_change()
        return response

    # Outputs -----------------------------------------------------------------------------
    def _watchdog(self) -> None:
        now = self._now_ns()
        was_holding = self.supervisor.holding
        hold = self.supervisor.tick(now)
        if self._publish_state_change():
            self.get_logger().error(self.supervisor.estop_reason)
        if hold is None:
            self._last_hold_ns = None
            if self.supervisor.holding_due(now):
                self.get_logger().warn(self.supervisor.last_reason, throttle_duration_sec=2.0)
            return
        period_ns = int(self.spec.period_s * 1e9)
        if not was_holding or self._last_hold_ns is None or \
                now - self._last_hold_ns >= period_ns - period_ns // (2 * CHECKS_PER_PERIOD):
            self._publish(now, hold)
            self._last_hold_ns = now
            self._holds_sent += 1

    def _publish(self, stamp_ns: int, values: np.ndarray) -> None:
        self.pub_command.publish(
            convert.command_msg(stamp_ns, self._names, values, self._interface))
        self._rate.tick()

    def _publish_state_change(self) -> bool:
        """Publish ``safety/state`` if the state changed; True when it did."""
        state = self.supervisor.state
        if state is self._published_state:
            return False
        first = self._published_state is None
        self._published_state = state
        reason = self.supervisor.estop_reason if state is SafetyState.ESTOPPED else ''
        self.pub_state.publish(String(data=f'{state.value}: {reason}' if reason
                                      else state.value))
        return not first

    def _publish_diagnostics(self) -> None:
        sup = self.supervisor
        stats = sup.stats()
        counts = sup.rule_counts
        recent = sorted(r for r, c in counts.items() if c > self._rule_counts_seen[r])
        self._rule_counts_seen = dict(counts)
        latency = np.array(self._latency_ns, dtype=np.float64) * 1e-3
        p50, p99 = (np.percentile(latency, [50, 99]) if latency.size else (0.0, 0.0))
        now = self._now_ns()
        stamp = sup.measured_stamp_ns
        state_age_s = (now - stamp) * 1e-9 if stamp is not None else float('inf')
        # 'held' counts hold commands sent (one per period), not the 4x-rate watchdog checks
        values = {'rate_hz': self._rate.rate_hz(), **stats, 'held': self._holds_sent,
                  'latency_us_p50': float(p50),
                  'latency_us_p99': float(p99), 'state_age_s': state_age_s,
                  'watchdog_s': sup.watchdog_ns * 1e-9}
        problems = []
        if stamp is None:
            problems.append('waiting for joint_states')
        elif state_age_s > sup.config.state_timeout_s:
            problems.append(f'joint_states stale ({state_age_s:.2f} s old)')
        if recent:
            problems.append(f'rules fired: {", ".join(recent)}')
        state = sup.state
        if state is SafetyState.ESTOPPED:
            level, message = 'error', '; '.join([f'E-STOPPED ({sup.estop_reason}): holding '
                                                 'until safety/reset', *problems])
        elif state is SafetyState.DISARMED:
            level, message = 'warn', '; '.join(['DISARMED: call safety/arm', *problems])
        elif problems:
            level, message = 'warn', '; '.join(problems)
        else:
            level, message = 'ok', 'holding' if stats['holding'] else state.value.lower()
        self.pub_diag.publish(level, message, values, stamp_ns=now)


def main(args: list[str] | None = None) -> int:
    """Run the safety node."""
    return run_node(SafetyNode, args)


if __name__ == '__main__':
    sys.exit(main())
