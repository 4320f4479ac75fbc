"""
Twin node: a MuJoCo twin behind exactly the ROS interface a driver offers.

Publishes ``joint_states``, ``task_state``, ``reward``, ``episode``, ``episode_start``,
``odom`` (mobile robots), optionally ``camera/color/image_raw``; obeys only ``command``
(from the safety supervisor); ``reset_episode`` (std_srvs/Trigger) starts a new episode.

Episodes. At a reset the twin publishes ``episode`` (std_msgs/Int32: the new episode's
number) and ``episode_start`` (std_msgs/Header: ``stamp`` is the stamp of the new
episode's first state, ``frame_id`` its number in decimal), both latched, then that first
state. State stamps (``joint_states``, ``task_state``, ``odom``) strictly increase: under
simulated time a reset does not advance the clock, so the first state of an episode is
stamped 1 ns after the previous episode's last. A bag can thus be split into episodes by
header stamps alone (:func:`dexmpc_ros.data.bag_reader.split_states`), whatever order
the recorder receives the topics in.

Timing: one control period of physics per tick. ``real_time_factor`` 1.0 ticks at the
robot's control rate on the wall clock; ``k`` ticks k times faster; 0 runs as fast as
possible. With ``publish_clock`` the twin publishes ``/clock`` from its simulated time and
stamps every message with it, so nodes run with ``use_sim_time`` follow the twin.

Lockstep (simulated time only): with ``lockstep`` the twin steps only once the command that
answers its last state has arrived (a ``command`` stamped at or after that state), or after
``lockstep_timeout_s`` of wall time without one (counted in diagnostics; the supervisor's
watchdog then acts as usual). Simulated time then never outruns the controller, whatever
the CPU load: learning experiments measure the method, as the papers' simulations do,
instead of how often a loaded 2-core machine misses a deadline. ``real_time_factor`` still
caps the speed. Real-time behaviour (deadlines, watchdog holds) is what runs without it.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.registry import make_twin
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare, parse_options
from dexmpc_ros.ros.world_topics import WorldTopics
from dexmpc_ros.safety.limits import CommandLimits
from dexmpc_ros.safety.rejection_rules import check_well_formed


@dataclass(frozen=True)
class TwinNodeConfig:
    """
    Twin node settings.

    Attributes:
        task: twin task (widowx: reach; hand24: valve, baoding; roach: waypoints, ...).
        seed: RNG seed of the first episode (-1: random); episode i uses seed + i.
        real_time_factor: simulated seconds per wall second; 0 = as fast as possible.
        publish_clock: publish /clock and stamp messages with simulated time.
        episode_steps: control steps per episode before an automatic reset (0 = never).
        camera: render camera/color/image_raw offscreen.
        camera_rate_hz: image rate [Hz] (simulated time).
        camera_width: image width [px].
        camera_height: image height [px].
        twin_options: extra twin constructor options as a YAML mapping string.
        lockstep: step only after the command answering the last state (needs
            publish_clock).
        lockstep_timeout_s: longest wall-clock wait for that command [s].
    """

    task: str = ''
    seed: int | None = None
    real_time_factor: float = 1.0
    publish_clock: bool = False
    episode_steps: int = 0
    camera: bool = False
    camera_rate_hz: float = 5.0
    camera_width: int = 320
    camera_height: int = 240
    twin_options: str = '{}'
    lockstep: bool = False
    lockstep_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.lockstep and not self.publish_clock:
            raise ValueError('lockstep needs publish_clock (experiment use_sim_time: true): '
                             'on the wall clock a waiting twin would only look stale')
        if not self.lockstep_timeout_s > 0:
            raise ValueError(f'lockstep_timeout_s must be > 0, got {self.lockstep_timeout_s}')
        if self.real_time_factor < 0:
            raise ValueError(f'real_time_factor must be >= 0, got {self.real_time_factor}')
        if self.episode_steps < 0:
            raise ValueError(f'episode_steps must be >= 0, got {self.episode_steps}')
        if self.camera and not (self.camera_rate_hz > 0 and self.camera_width > 0
                                and self.camera_height > 0):
            raise ValueError('camera_rate_hz, camera_width and camera_height must be > 0')


class TwinNode(Node):
    """Adapter: command -> twin -> joint_states/task_state/reward/odom/image."""

    def __init__(self) -> None:
        super().__init__('twin')
        self.spec = load_robot_spec(declare(self, 'robot', 'widowx', 'robot spec name or path'))
        self.cfg = config_from_node(self, TwinNodeConfig)
        options = parse_options(self.cfg.twin_options, f'node {self.get_name()}: twin_options')
        if self.cfg.task:
            options['task'] = self.cfg.task
        self.twin = make_twin(self.spec.name, spec=self.spec, **options)
        self._limits = CommandLimits.from_spec(self.spec)

        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)  # lockstep: a command arrived
        self._answer_stamp = -1        # newest command stamp [ns]
        self._lockstep_timeouts = 0
        self._pending_command: np.ndarray | None = None
        self._reset_requested = False
        self._episode = -1
        self._episode_step = 0
        self._episode_return = 0.0
        self._last_reward = 0.0
        self._rate = RateMeter()
        self._commands_applied = 0
        self._commands_rejected = 0
        self._next_image_time = 0.0
        self._last_state_stamp = -1

        self.pub_joints = self.create_publisher(JointState, 'joint_states', 10)
        self.topics = WorldTopics(self, odom=self.twin.odom() is not None)
        self.pub_diag = DiagnosticsPublisher(self)
        self.pub_image = (self.create_publisher(Image, 'camera/color/image_raw',
                                                qos_profile_sensor_data)
                          if self.cfg.camera else None)
        self.pub_clock = (self.create_publisher(Clock, '/clock', 10)
                          if self.cfg.publish_clock else None)
        self.create_subscription(JointTrajectory, 'command', self._on_command, 10)
        self.create_service(Trigger, 'reset_episode', self._on_reset)
        self.create_timer(1.0, self._publish_diagnostics)

        threaded = self.cfg.real_time_factor == 0 or self.cfg.lockstep
        if self.cfg.camera and not threaded:
            # create the renderer (EGL context, ~1 s) before the first joint_states, so the
            # state stream does not stall right after the supervisor armed on it
            self.twin.render(self.cfg.camera_width, self.cfg.camera_height)
        self._start_episode()
        self._stop = threading.Event()
        if threaded:
            self._thread = threading.Thread(
                target=self._run_lockstep if self.cfg.lockstep else self._run_fast, daemon=True)
            self._thread.start()
        else:
            period = self.spec.period_s / self.cfg.real_time_factor
            self.create_timer(period, self._tick, MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f'{self.spec.name} twin ready: {len(self.spec.joints)} joints, '
            f'{self.spec.control_rate_hz:g} Hz, real_time_factor {self.cfg.real_time_factor:g}'
            + (', lockstep' if self.cfg.lockstep else ''))

    # Callbacks ----------------------------------------------------------------------
    def _on_command(self, msg: JointTrajectory) -> None:
        names, values, stamp = convert.command_to_arrays(msg, self.spec.command_interface)
        # The supervisor already checked the command; the twin only refuses what it
        # cannot apply (safety's finite and names rules), and says so, instead of guessing.
        formed = check_well_formed(names, values, self._limits)
        if formed.fired:
            self._commands_rejected += 1
            self.get_logger().error(f'ignoring malformed command for joints {names}: '
                                    f'{formed.reason}', throttle_duration_sec=1.0)
            return
        with self._lock:
            self._pending_command = formed.values
            self._answer_stamp = max(self._answer_stamp, stamp)
            self._answered.notify_all()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        with self._lock:
            self._reset_requested = True
        response.success = True
        response.message = f'episode {self._episode + 1} starts at the next tick'
        return response

    # Simulation loop ------------------------------------------------------------------
    def _run_fast(self) -> None:
        while not self._stop.is_set() and self._tick_unless_shut_down():
            pass

    def _tick_unless_shut_down(self) -> bool:
        """One tick; False once Ctrl-C has shut the context down under this thread."""
        try:
            self._tick()
        except Exception:  # noqa: BLE001 - rclpy raises RCLError once shut down
            if not self.context.ok():
                return False
            raise
        return True

    def _run_lockstep(self) -> None:
        period = (self.spec.period_s / self.cfg.real_time_factor
                  if self.cfg.real_time_factor > 0 else 0.0)
        due = time.monotonic()
        while not self._stop.is_set():
            deadline = time.monotonic() + self.cfg.lockstep_timeout_s
            with self._answered:
                while self._answer_stamp < self._last_state_stamp and \
                        not self._stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._lockstep_timeouts += 1
                        break
                    self._answered.wait(min(remaining, 0.1))
            due += period
            wait = due - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
            else:
                due = time.monotonic()
            if not self._tick_unless_shut_down():
                return

    def _tick(self) -> None:
        with self._lock:
            command, self._pending_command = self._pending_command, None
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self._start_episode()
        if command is not None:
            self.twin.apply_command(command)
            self._commands_applied += 1
        self.twin.step()
        self._episode_step += 1
        self._last_reward = float(self.twin.reward())
        self._episode_return += self._last_reward
        self._rate.tick()
        self._publish_state(with_reward=True)
        if self.twin.done() or (self.cfg.episode_steps and
                                self._episode_step >= self.cfg.episode_steps):
            self._start_episode()

    def _start_episode(self) -> None:
        self._episode += 1
        seed = None if self.cfg.seed is None else self.cfg.seed + self._episode
        self.twin.reset(seed)
        self._episode_step = 0
        self._episode_return = 0.0
        stamp = self._state_stamp()
        self.topics.episode(stamp, self._episode)
        self._publish_state(with_reward=False, stamp=stamp)

    def _stamp_ns(self) -> int:
        if self.cfg.publish_clock:
            return int(round(self.twin.time * 1e9))
        return self.get_clock().now().nanoseconds

    def _state_stamp(self) -> int:
        """The next state's stamp: the clock, but always after the previous state's."""
        stamp = max(self._stamp_ns(), self._last_state_stamp + 1)
        self._last_state_stamp = stamp
        return stamp

    def _publish_state(self, with_reward: bool, stamp: int | None = None) -> None:
        if stamp is None:
            stamp = self._state_stamp()
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=convert.ns_to_time(stamp)))
        joints = self.twin.joints()
        self.pub_joints.publish(convert.joint_state_msg(
            stamp, self.spec.joint_names, joints.position, joints.velocity, joints.effort))
        names, values = self.twin.task_state()
        self.topics.state(stamp, names, values, self.twin.odom())
        if with_reward:
            self.topics.reward(self._last_reward)
        if self.pub_image is not None and self.twin.time >= self._next_image_time:
            self._next_image_time = self.twin.time + 1.0 / self.cfg.camera_rate_hz
            rgb = self.twin.render(self.cfg.camera_width, self.cfg.camera_height)
            if rgb is not None:
                self.pub_image.publish(convert.image_msg(stamp, rgb))

    def _publish_diagnostics(self) -> None:
        rate = self._rate.rate_hz()
        self.pub_diag.publish(
            'ok', f'{self.spec.name} twin, episode {self._episode}',
            {'rate_hz': rate, 'episode': self._episode, 'episode_step': self._episode_step,
             'reward': self._last_reward, 'episode_return': self._episode_return,
             'sim_time_s': self.twin.time, 'commands_applied': self._commands_applied,
             'commands_rejected': self._commands_rejected,
             'lockstep_timeouts': self._lockstep_timeouts},
            stamp_ns=self._stamp_ns())

    def destroy_node(self) -> None:
        """Stop the fast loop and free the renderer."""
        if hasattr(self, '_stop'):
            self._stop.set()
            if hasattr(self, '_thread'):
                self._thread.join(timeout=2.0)
        if hasattr(self, 'twin'):
            self.twin.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """
    Run the twin node.

    Single-threaded on purpose: an OpenGL (EGL) context is bound to the thread that made
    it, so physics and rendering must always run on the same thread.
    """
    return run_node(TwinNode, args)


if __name__ == '__main__':
    sys.exit(main())
