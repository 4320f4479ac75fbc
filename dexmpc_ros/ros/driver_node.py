"""
Driver node: a lifecycle node around any :class:`~dexmpc_ros.robots.driver.Driver`.

It offers exactly the twin's robot interface (``twin_node.py``): publishes
``joint_states`` (the twin's names and order, stamped now) and ``diagnostics``; obeys only
``command`` (trajectory_msgs/JointTrajectory from the safety supervisor). It also publishes
``safety/estop`` (std_msgs/Bool) when the hardware faults and serves ``~/recover``
(std_srvs/Trigger).

IMU: when a reading carries one (``DriverState.imu()``: gyro and accelerometer in
``extra``, e.g. the roach's), the node also publishes sensor_msgs/Imu on ``imu`` with the
``joint_states`` stamp, frame ``imu_frame_id`` (body axes, REP-103), no orientation
(``orientation_covariance[0] = -1``) and all-zero (unknown) rate and acceleration
covariances. This is the body rate the safety supervisor needs for a floating base. A
reading that lists faults (e.g. a lost radio link: the gyro is the last one received)
publishes no Imu, so the supervisor sees the body rate go stale.

Lifecycle (hardware.md §7; ros2/demos lifecycle_py):

* configure -> ``driver.connect()``; a missing port is retried for ``connect_wait_s``
  (it may appear late). A DriverError is logged at ERROR with its fix hint and fails
  the transition;
* activate -> ``driver.enable()``, then a timer at ``rate_hz`` reads the robot and
  publishes; commands are written only while active;
* deactivate -> timer stopped, ``driver.disable()``; cleanup/shutdown -> ``disconnect()``.

``autostart`` (default true) configures and activates at start-up, because ``dexmpc up``
has no lifecycle manager; if that fails the process exits non-zero and its last output
line is the driver's one-line message ("no Dynamixel bus on /dev/ttyUSB0: check the U2D2
cable ..."). With ``autostart: false`` it waits for ``ros2 lifecycle set <node> ...``.

Faults: a DriverError (HardwareFaultError, a lost port, no answer) in read() or write(), or
a reading that lists ``faults``, makes diagnostics ERROR name the fault, publishes
``safety/estop`` true once, calls ``driver.disable()`` (every actuator gets its torque-off
attempt; diagnostics ``may_be_powered`` names those that did not confirm) and holds: no
further command is written until ``~/recover`` succeeds (reconnect if needed,
``clear_faults()``, a fault-free read, ``enable()``) or the node is reactivated. During the
hold the node keeps reading: a PartialReadError's ``state`` (every joint, NaN where only a
silent device measures it) is published as ``joint_states``, and diagnostics
``not_answering`` names the silent devices ('all (bus silent)' for a BusSilentError).
A reading whose faults are ``self_clearing`` (the roach's lost radio link) holds the same
way but ends by itself: the first fault-free reading re-enables and writes commands again;
``~/recover`` meanwhile answers with the fault and what to check. The supervisor's e-stop
stays latched until ``safety/reset``, as it defines, so the robot holds until the operator
resets it either way. Malformed commands (by the safety rules
``finite`` and ``names``: wrong joints, length, non-finite) and stale ones (older than
``command_age_budget_s``) are dropped and counted in diagnostics (``ros/lifecycle.py:
CommandGate``, shared with the hand driver node).

Threads: the node spins a multi-threaded executor with the read timer, ``command`` and
``~/recover`` each in its own mutually exclusive callback group (commands are written in
arrival order) and diagnostics and the lifecycle services in the default one, so a slow or
silent bus stops none of them. One device lock serialises the driver calls: a transition,
``~/recover`` or the torque-off after a fault goes before the next read tick (a timer
always due would otherwise starve them); command writes and reads take turns, so a backlog
of commands cannot starve ``joint_states``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.driver import (BusSilentError, DriverError, DriverState, PartialReadError,
                                      PortMissingError, TorqueOffError)
from dexmpc_ros.robots.driver_registry import make_driver
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.lifecycle import (ERROR, FAILURE, SUCCESS, CommandGate, autostart,
                                      run_lifecycle_node)
from dexmpc_ros.ros.params import config_from_node, declare, parse_options

CONNECT_RETRY_S = 0.2      # poll period of a missing port during connect_wait_s [s]


@dataclass(frozen=True)
class DriverNodeConfig:
    """
    Driver node settings.

    Attributes:
        driver: driver registry name (widowx, roach) or package.module:Class path; '' =
            the robot's name.
        driver_options: driver settings as a YAML mapping string (port, baudrate, ...).
        autostart: configure and activate at start-up; false waits for ros2 lifecycle set.
        rate_hz: read and publish rate [Hz]; 0 = the robot's control rate.
        command_age_budget_s: commands stamped longer ago than this are stale [s].
        future_tolerance_s: commands stamped further ahead than this are stale [s].
        connect_wait_s: configure retries a missing port (PortMissingError) for this long
            before failing [s]: a udev symlink, or an emulator still starting, appears late.
        imu_frame_id: ``frame_id`` of the ``imu`` messages (robots whose driver reads one).
    """

    driver: str = ''
    driver_options: str = '{}'
    autostart: bool = True
    rate_hz: float = 0.0
    command_age_budget_s: float = 0.5
    future_tolerance_s: float = 0.05
    connect_wait_s: float = 3.0
    imu_frame_id: str = 'base_link'

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_hz) and self.rate_hz >= 0):
            raise ValueError(f'rate_hz must be finite and >= 0, got {self.rate_hz}')
        if not (math.isfinite(self.connect_wait_s) and self.connect_wait_s >= 0):
            raise ValueError(f'connect_wait_s must be finite and >= 0, got '
                             f'{self.connect_wait_s}')
        for name in ('command_age_budget_s', 'future_tolerance_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')


class DriverNode(LifecycleNode):
    """Adapter: command -> Driver.write(); Driver.read() -> joint_states + diagnostics."""

    def __init__(self) -> None:
        super().__init__('driver')
        self.spec = load_robot_spec(declare(self, 'robot', 'widowx', 'robot spec name or path'))
        self.cfg = config_from_node(self, DriverNodeConfig)
        options = parse_options(self.cfg.driver_options, f'node {self.get_name()}: '
                                'driver_options')
        self.driver = make_driver(self.cfg.driver or self.spec.name, self.spec, options)
        self.startup_error = ''
        self._lifecycle = 'unconfigured'
        self._gate = CommandGate(self.spec, self.spec.command_interface,
                                 self.cfg.command_age_budget_s, self.cfg.future_tolerance_s,
                                 self.get_logger())
        self._period_s = 1.0 / self.cfg.rate_hz if self.cfg.rate_hz > 0 else self.spec.period_s
        self._timer = None
        self._active = False
        self._fault: str | None = None
        self._fault_clears_itself = False
        self._not_answering = ''     # devices silent at the last read
        self._still_powered = ''     # actuators whose torque-off after a fault failed
        self._extra: dict[str, float] = {}
        # the driver serves one caller at a time (see _device)
        self._device_lock = threading.RLock()
        self._device_waiters = 0
        self._waiters_lock = threading.Lock()
        self._reads = RateMeter()
        self._counts = dict.fromkeys(('writes', 'commands_malformed', 'commands_stale',
                                      'commands_held', 'commands_inactive', 'read_errors',
                                      'write_errors', 'faults'), 0)

        self.pub_joints = self.create_lifecycle_publisher(JointState, 'joint_states', 10)
        self.pub_imu = None      # created at the first reading that carries an IMU
        self.pub_diag = DiagnosticsPublisher(self)
        self.pub_estop = self.create_publisher(Bool, 'safety/estop', 10)
        self.create_subscription(JointTrajectory, 'command', self._on_command, 10,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, '~/recover', self._on_recover,
                            callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f'{self.driver.label}: {len(self.spec.joints)} joints, '
            f'{1.0 / self._period_s:g} Hz, autostart {self.cfg.autostart}')
        if self.cfg.autostart:
            autostart(self)

    # Lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Connect (open the port, identify the device); the robot stays passive."""
        result = self._guard('configure', self._connect)
        if result == SUCCESS:
            self._lifecycle = 'inactive'
            self.get_logger().info(f'{self.driver.label} connected')
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the robot (torque on at the present position) and start the read timer."""
        result = self._guard('activate', self.driver.enable)
        if result != SUCCESS:
            return result
        self._fault, self._fault_clears_itself, self._still_powered = None, False, ''
        self._active = True
        self._lifecycle = 'active'
        self._timer = self.create_timer(self._period_s, self._tick,
                                        MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f'{self.driver.label} active: obeying command')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop obeying and reading; disable the robot (a failure is logged, not fatal)."""
        self._stop_timer()
        self._guard('deactivate', self.driver.disable)
        self._lifecycle = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Disconnect (make the robot safe, close the port)."""
        self._guard('cleanup', self.driver.disconnect)
        self._lifecycle = 'unconfigured'
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Disable if active, then disconnect."""
        self._release()
        self._lifecycle = 'finalized'
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An unexpected exception in a transition: release the robot, back to unconfigured."""
        self._release()
        self._lifecycle = 'unconfigured'
        return SUCCESS

    def _guard(self, what: str, action: Callable[[], None]) -> TransitionCallbackReturn:
        """Run a driver call of a transition; a DriverError -> FAILURE with its message."""
        try:
            with self._device():
                action()
        except DriverError as exc:
            self.startup_error = f'{self.get_name()}: {what} failed: {exc}'
            self.get_logger().error(self.startup_error)
            return FAILURE
        except Exception as exc:  # noqa: BLE001 - rclpy would swallow it without a word
            self.startup_error = f'{self.get_name()}: {what} failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(self.startup_error)
            return ERROR
        return SUCCESS

    def _connect(self) -> None:
        """driver.connect(), retrying a missing port for up to ``connect_wait_s``."""
        deadline = time.monotonic() + self.cfg.connect_wait_s
        while True:
            try:
                self.driver.connect()
                return
            except PortMissingError as exc:
                if time.monotonic() >= deadline:
                    raise
                self.get_logger().info(f'{exc.args[0]}: waiting up to '
                                       f'{self.cfg.connect_wait_s:g} s for it to appear',
                                       once=True)
                time.sleep(CONNECT_RETRY_S)

    def _stop_timer(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def _release(self) -> None:
        was_active = self._active
        self._stop_timer()
        if was_active:
            self._guard('disable', self.driver.disable)
        self._guard('disconnect', self.driver.disconnect)

    # Control -----------------------------------------------------------------------------
    @contextmanager
    def _device(self, urgent: bool = True) -> Iterator[None]:
        """
        Exclusive use of the driver.

        An urgent caller (a transition, ``~/recover``, the torque-off after a fault) goes
        before the next read tick, which would otherwise always be due. A command write is
        not urgent: it and the tick take turns (both are short and periodic); had writes
        gone first, a backlog of commands skipped reads until joint_states went stale.
        """
        if not urgent:
            with self._device_lock:
                yield
            return
        with self._waiters_lock:
            self._device_waiters += 1
        try:
            self._device_lock.acquire()
        finally:
            with self._waiters_lock:
                self._device_waiters -= 1
        try:
            yield
        finally:
            self._device_lock.release()

    def _tick(self) -> None:
        # deactivated meanwhile, an urgent caller waits, or a write outlasts a period: read
        # at the next tick
        if not self._active or self._device_waiters or \
                not self._device_lock.acquire(timeout=self._period_s):
            return
        try:
            state = self.driver.read()
        except DriverError as exc:
            self._counts['read_errors'] += 1
            self._not_answering = 'all (bus silent)' if isinstance(exc, BusSilentError) \
                else ', '.join(exc.silent) if isinstance(exc, PartialReadError) else ''
            if isinstance(exc, PartialReadError) and exc.state is not None:
                self._publish_state(exc.state)     # what answered, NaN for the rest
            self._set_fault(f'read failed: {exc}')
            return
        finally:
            self._device_lock.release()
        self._not_answering = ''
        self._publish_state(state)
        if state.faults:
            self._set_fault('; '.join(state.faults), state.self_clearing)
        elif self._fault is not None and self._fault_clears_itself:
            self._resume()

    def _publish_state(self, state: DriverState) -> None:
        """joint_states (+ imu unless the reading lists faults), stamped now."""
        self._reads.tick()
        stamp_ns = self.get_clock().now().nanoseconds
        self.pub_joints.publish(convert.joint_state_msg(
            stamp_ns, state.names, state.position, state.velocity, state.effort))
        imu = state.imu()
        if imu is not None and not state.faults:
            if self.pub_imu is None:
                self.pub_imu = self.create_publisher(Imu, 'imu', 10)
            self.pub_imu.publish(convert.imu_msg(stamp_ns, *imu, self.cfg.imu_frame_id))
        self._extra = dict(state.extra)

    def _on_command(self, msg: JointTrajectory) -> None:
        verdict = self._gate.check(msg, self._active, self.get_clock().now().nanoseconds)
        if verdict.values is None:
            self._counts[verdict.refused] += 1
            return
        values = verdict.values
        if self._fault is not None:
            self._counts['commands_held'] += 1
            return
        try:
            with self._device(urgent=False):
                self.driver.write(values)
        except DriverError as exc:
            self._counts['write_errors'] += 1
            self._set_fault(f'write failed: {exc}')
            return
        self._counts['writes'] += 1

    def _set_fault(self, reason: str, clears_itself: bool = False) -> None:
        """Enter the hold: one e-stop request, torque off, an ERROR diagnostic per fault."""
        if self._fault is not None:
            if self._fault_clears_itself and not clears_itself:
                self._fault, self._fault_clears_itself = reason, False   # now latched
            self.get_logger().error(f'still faulted: {reason}', throttle_duration_sec=5.0)
            return
        self._fault, self._fault_clears_itself = reason, clears_itself
        self._counts['faults'] += 1
        until = 'it clears' if clears_itself else '~/recover'
        self.get_logger().error(f'{reason}; holding (no commands written) until {until}, '
                                f'e-stop requested, torque off')
        self.pub_estop.publish(Bool(data=True))
        self._torque_off()
        self._publish_diagnostics()

    def _torque_off(self) -> None:
        """driver.disable() after a fault; records the actuators that may still be powered."""
        try:
            with self._device():
                self.driver.disable()
            self._still_powered = ''
        except TorqueOffError as exc:
            self._still_powered = ', '.join(exc.still_powered)
            self.get_logger().error(f'after the fault: {exc}')
        except DriverError as exc:
            self._still_powered = f'unknown ({exc})'
            self.get_logger().error(f'after the fault, disable() failed: {exc}')

    def _resume(self) -> None:
        """A self-clearing fault ended (a fault-free reading): re-enable, write commands."""
        try:
            with self._device():
                self.driver.enable()
        except DriverError as exc:
            self._set_fault(f'enable after "{self._fault}" cleared failed: {exc}')
            return
        old, self._fault, self._fault_clears_itself = self._fault, None, False
        self._still_powered = ''
        self.get_logger().warn(f'fault cleared by itself ({old}): commands are written again '
                               f'(the safety supervisor stays e-stopped until safety/reset)')
        self._publish_diagnostics()

    def _on_recover(self, request: Trigger.Request, response: Trigger.Response
                    ) -> Trigger.Response:
        response.success, response.message = self._recover()
        # one call site per severity: rclpy refuses a second severity from the same line
        if response.success:
            self.get_logger().info(f'~/recover: {response.message}')
        else:
            self.get_logger().warn(f'~/recover: {response.message}')
        return response

    def _recover(self) -> tuple[bool, str]:
        if not self._active:
            return False, f'node is {self._lifecycle}, not active: activate it first'
        if self._fault is None:
            return True, 'no fault: nothing to recover'
        try:
            with self._device():
                if not self.driver.is_connected:
                    self.driver.connect()
                self.driver.clear_faults()
                state = self.driver.read()
                if state.faults and state.self_clearing:
                    return False, (f'{"; ".join(state.faults)}. Nothing to reset here: '
                                   f'commands are written again by themselves once that clears')
                if state.faults:
                    return False, f'still faulted: {"; ".join(state.faults)}'
                self.driver.enable()
        except DriverError as exc:
            return False, f'recovery failed: {exc}'
        old, self._fault, self._still_powered = self._fault, None, ''
        self._publish_diagnostics()
        return True, (f'recovered from "{old}": commands are written again (the safety '
                      f'supervisor stays e-stopped until safety/reset)')

    def _publish_diagnostics(self) -> None:
        if self._fault is not None:
            until = 'it clears' if self._fault_clears_itself else '~/recover'
            level, message = 'error', f'FAULT: {self._fault}; holding until {until}'
            if self._still_powered:
                message += f'; may still be powered: {self._still_powered}'
        elif self._active:
            level, message = 'ok', f'{self.driver.label} active'
        else:
            level, message = 'warn', f'{self.driver.label} {self._lifecycle}: not reading'
        values = {'lifecycle_state': self._lifecycle, 'rate_hz': self._reads.rate_hz(),
                  'reads': self._reads.count, **self._counts, 'fault': self._fault or '',
                  'not_answering': self._not_answering, 'may_be_powered': self._still_powered,
                  **self._extra}
        self.pub_diag.publish(level, message, values, hardware_id=self.driver.label)

    def destroy_node(self) -> None:
        """Leave the robot safe: disable and disconnect whatever state the node is in."""
        if hasattr(self, 'driver'):
            self._release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the driver node: read timer, command, ~/recover and the rest on their own threads."""
    return run_lifecycle_node(DriverNode, args, threads=4)


if __name__ == '__main__':
    sys.exit(main())
