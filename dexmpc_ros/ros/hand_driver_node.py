"""
Hand driver node: the 24-DoF Shadow hand under ros2_control, behind the twin's interface.

The hand runs its own controller manager (Shadow's stack, or the simulated system of
``urdf/hand24.urdf``); this lifecycle node is a client of its controllers (hardware.md
§3.2, §6.1), with every non-ROS detail in ``robots/hand24/driver.py``:

* subscribes the hand's joint_state_broadcaster output (``hand_joint_states_topic``,
  Shadow names such as ``rh_FFJ3``, any order) and publishes ``joint_states`` in the
  twin's names and order (:meth:`HandJointMap.twin_state`), keeping the hand's stamp
  (now, if the hand sends none);
* obeys ``command`` (the safety supervisor's JointTrajectory, the 20 actuated twin joints)
  by publishing ``<controller>/commands`` (std_msgs/Float64MultiArray in the controller's
  ``joints:`` order; a virtual ``rh_FFJ0`` gets J1 + J2 = 2 x the J2 target) when
  ``command_mode`` is ``forward``, or ``<controller>/joint_trajectory`` (one point,
  ``time_from_start = point_time_s``, header stamp 0 = start now) when ``trajectory``;
* watches the state stream (:class:`StateWatchdog`): silence longer than
  ``state_timeout_s`` on two checks in a row (checks every timeout/5) -> diagnostics ERROR
  ``silent controller`` and ``safety/estop`` true, once; the first state after it ->
  diagnostics OK again. The supervisor keeps its e-stop latched until ``safety/reset``, as
  it defines.

The controller's joint list: ``controller_joints`` if given, else its ``joints:`` in
``controllers_file`` (default ``config/controllers/hand24_controllers.yaml``), else, for
Shadow's ``rh_trajectory_controller`` (trajectory mode), the hand's 24 joint names.

Lifecycle: configure checks nothing on the hand (the controller manager may start
later); activate starts the watchdog (silence counts from activation) and forwarding;
deactivate stops both. ``autostart`` and the command check (``ros/lifecycle.py``) as in
``driver_node``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import config_dir, load_robot_spec
from dexmpc_ros.core.yaml_io import load_yaml_mapping
from dexmpc_ros.robots.hand24.driver import (SILENT_CONTROLLER, HandJointMap, MissingJointError,
                                             ShadowHandConfig, StateWatchdog, controller_joints)
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.lifecycle import (SUCCESS, CommandGate, StartupError, autostart,
                                      run_lifecycle_node)
from dexmpc_ros.ros.params import config_from_node, declare

#: Watchdog checks per state timeout (trip delay <= timeout / this after the timeout).
CHECKS_PER_TIMEOUT = 5


@dataclass(frozen=True)
class HandNodeConfig:
    """
    Hand driver node settings (beside ShadowHandConfig's).

    Attributes:
        hand_joint_states_topic: the hand's joint_state_broadcaster output (Shadow names).
        controllers_file: controllers YAML holding the controller's joints: list; '' =
            config/controllers/hand24_controllers.yaml.
        controller_joints: the controller's joints in its order; empty = from
            controllers_file.
        autostart: configure and activate at start-up; false waits for ros2 lifecycle set.
        first_state_timeout_s: with autostart, exit with an actionable error when the hand
            has sent no joint_states this long after start-up [s]; 0 = wait forever.
        command_age_budget_s: commands stamped longer ago than this are stale [s].
        future_tolerance_s: commands stamped further ahead than this are stale [s].
    """

    hand_joint_states_topic: str = 'hand/joint_states'
    controllers_file: str = ''
    controller_joints: tuple = ()
    autostart: bool = True
    first_state_timeout_s: float = 10.0
    command_age_budget_s: float = 0.5
    future_tolerance_s: float = 0.05

    def __post_init__(self) -> None:
        if not self.hand_joint_states_topic:
            raise ValueError('hand_joint_states_topic must not be empty')
        if not (math.isfinite(self.first_state_timeout_s) and self.first_state_timeout_s >= 0):
            raise ValueError(f'first_state_timeout_s must be finite and >= 0, '
                             f'got {self.first_state_timeout_s}')
        for name in ('command_age_budget_s', 'future_tolerance_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')


def resolve_controller_joints(hand: ShadowHandConfig, node_cfg: HandNodeConfig,
                              joint_map: HandJointMap) -> list[str]:
    """The controller's joints: given, from the controllers YAML, or Shadow's 24 names."""
    if node_cfg.controller_joints:
        return [str(j) for j in node_cfg.controller_joints]
    path = Path(node_cfg.controllers_file) if node_cfg.controllers_file else \
        config_dir() / 'controllers' / 'hand24_controllers.yaml'
    controllers = load_yaml_mapping(path)
    if hand.controller not in controllers and hand.command_mode == 'trajectory':
        # Shadow's rh_trajectory_controller names all 24 rh_* joints (hardware.md §3.2).
        return [joint_map.hardware_names[name] for name in joint_map.twin_names]
    try:
        return controller_joints(controllers, hand.controller)
    except ValueError as exc:
        raise ConfigError(f'{path}: {exc}; set controller_joints or controllers_file') from exc


class HandDriverNode(LifecycleNode):
    """Adapter: hand joint_states -> joint_states; command -> the hand's controller."""

    def __init__(self) -> None:
        super().__init__('hand_driver')
        self.spec = load_robot_spec(declare(self, 'robot', 'hand24', 'robot spec name or path'))
        self.hand = config_from_node(self, ShadowHandConfig)
        self.cfg = config_from_node(self, HandNodeConfig)
        self.startup_error = ''
        try:
            self.map = HandJointMap.from_spec(self.spec)
            self.joints = resolve_controller_joints(self.hand, self.cfg, self.map)
            self.map.command_values(np.zeros(len(self.spec.command_names)), self.joints)
        except ValueError as exc:
            raise ConfigError(f'node {self.get_name()}: controller {self.hand.controller}: '
                              f'{exc}') from exc
        self._gate = CommandGate(self.spec, 'position', self.cfg.command_age_budget_s,
                                 self.cfg.future_tolerance_s, self.get_logger())
        self._active = False
        self._silent = False
        self._watchdog: StateWatchdog | None = None
        self._timer = None
        self._states = RateMeter()
        self._counts = dict.fromkeys(('commands_forwarded', 'commands_malformed',
                                      'commands_stale', 'commands_inactive', 'bad_states',
                                      'silences'), 0)
        self._last_bad_state = ''
        self._last_state = time.monotonic()
        self._activated_at = time.monotonic()
        self._any_state = False

        self.pub_joints = self.create_lifecycle_publisher(JointState, 'joint_states', 10)
        controller = self.hand.controller.strip('/')
        if self.hand.command_mode == 'forward':
            self.pub_controller = self.create_lifecycle_publisher(
                Float64MultiArray, f'{controller}/commands', 10)
        else:
            self.pub_controller = self.create_lifecycle_publisher(
                JointTrajectory, f'{controller}/joint_trajectory', 10)
        self.pub_diag = DiagnosticsPublisher(self)
        self.pub_estop = self.create_publisher(Bool, 'safety/estop', 10)
        self.create_subscription(JointState, self.cfg.hand_joint_states_topic,
                                 self._on_hand_state, 10)
        self.create_subscription(JointTrajectory, 'command', self._on_command, 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'hand via {self.pub_controller.topic_name} ({len(self.joints)} joints, '
            f'{self.hand.command_mode}), state from {self.cfg.hand_joint_states_topic}, '
            f'watchdog {self.hand.state_timeout_s:g} s')
        if self.cfg.autostart:
            autostart(self)

    # Lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Nothing to open: the hand's controller manager is reached over topics."""
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start forwarding and the watchdog (silence counts from now)."""
        self._watchdog = StateWatchdog(self.hand.state_timeout_s)
        self._last_state = self._activated_at = time.monotonic()
        self._silent = False
        self._timer = self.create_timer(self.hand.state_timeout_s / CHECKS_PER_TIMEOUT,
                                        self._check)
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop forwarding and watching."""
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return SUCCESS

    def _stop(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    # Data --------------------------------------------------------------------------------
    def _on_hand_state(self, msg: JointState) -> None:
        if not self._active:
            return
        try:
            state = self.map.twin_state(msg.name, msg.position, msg.velocity, msg.effort)
        except (MissingJointError, ValueError) as exc:
            self._counts['bad_states'] += 1
            self._last_bad_state = str(exc)
            self.get_logger().error(f'ignoring hand joint_states: {exc}',
                                    throttle_duration_sec=2.0)
            return
        self._watchdog.feed()
        self._any_state = True
        self._last_state = time.monotonic()
        self._states.tick()
        stamp_ns = convert.time_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        self.pub_joints.publish(convert.joint_state_msg(
            stamp_ns, state.names, state.position, state.velocity, state.effort))

    def _on_command(self, msg: JointTrajectory) -> None:
        verdict = self._gate.check(msg, self._active, self.get_clock().now().nanoseconds)
        if verdict.values is None:
            self._counts[verdict.refused] += 1
            return
        values = verdict.values
        if self.hand.command_mode == 'forward':
            self.pub_controller.publish(Float64MultiArray(
                data=self.map.command_values(values, self.joints)))
        else:
            joint_names, positions, t_s = self.map.trajectory_point(
                values, self.joints, self.hand.point_time_s)
            # stamp 0: the controller starts the point on receipt
            self.pub_controller.publish(convert.plan_msg(0, joint_names, np.array([positions]),
                                                         t_s))
        self._counts['commands_forwarded'] += 1

    def _absent_hand(self, waited_s: float) -> str:
        topic = self.pub_joints.topic_name.rsplit('/', 1)[0] + '/' + \
            self.cfg.hand_joint_states_topic.lstrip('/')
        return (f'no Shadow hand joint_states on {topic} for {waited_s:.1f} s: check that the '
                f"hand's ros2_control is running (controller_manager with "
                f'joint_state_broadcaster and {self.hand.controller}: ros2 control '
                f'list_controllers) and that ROS_DOMAIN_ID matches')

    def _check(self) -> None:
        waited = time.monotonic() - self._activated_at
        if (self.cfg.autostart and not self._any_state and self.cfg.first_state_timeout_s
                and waited > self.cfg.first_state_timeout_s):
            self.get_logger().error(self._absent_hand(waited))
            raise StartupError(self._absent_hand(waited))
        status = self._watchdog.check()
        if status.event == 'tripped':
            self._silent = True
            self._counts['silences'] += 1
            self.get_logger().error(
                f'{status.fault}: no {self.cfg.hand_joint_states_topic} for '
                f'{status.age_s:.2f} s (the hand\'s controller manager is dead or wedged); '
                f'e-stop requested')
            self.pub_estop.publish(Bool(data=True))
            self._publish_diagnostics()
        elif status.event == 'recovered':
            self._silent = False
            self.get_logger().info(f'{self.cfg.hand_joint_states_topic} back: the e-stop '
                                   'stays latched until safety/reset')
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        age_s = time.monotonic() - self._last_state if self._active else float('nan')
        if self._silent:
            level, message = 'error', f'{SILENT_CONTROLLER}: {self._absent_hand(age_s)}'
            if self._last_bad_state:
                message += f' (last rejected: {self._last_bad_state})'
        elif not self._active:
            level, message = 'warn', 'inactive: not forwarding'
        else:
            level, message = 'ok', f'hand via {self.hand.controller} ({self.hand.command_mode})'
        values = {'state_rate_hz': self._states.rate_hz(), 'state_age_s': age_s,
                  **self._counts, 'controller': self.hand.controller,
                  'command_mode': self.hand.command_mode}
        self.pub_diag.publish(level, message, values, hardware_id=self.hand.controller)


def main(args: list[str] | None = None) -> int:
    """Run the hand driver node."""
    return run_lifecycle_node(HandDriverNode, args)


if __name__ == '__main__':
    sys.exit(main())
