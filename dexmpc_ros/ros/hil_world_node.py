"""
HIL world node: the world behind the wire, for hardware-in-the-loop runs without hardware.

Owns a :class:`~dexmpc_ros.robots.hil_world.HilWorld`: the robot's MuJoCo twin (with its
task scene) moved by the robot's wire-protocol emulator on a pseudo-terminal at ``port``.
The robot's real driver node opens that port; the command path is the hardware one:
controller -> safety -> ``command`` -> driver_node -> dynamixel_sdk / pyserial -> pty ->
emulator -> twin. This node therefore publishes neither ``joint_states`` nor obeys
``command``: it publishes what a lab's tracker or motion capture would.

Publishes ``task_state``, ``reward``, ``episode``, ``episode_start`` (latched) and, for the
roach, ``odom`` (the pose source); serves ``reset_episode`` (std_srvs/Trigger), which resets
the scene and the robot's body in the twin (see hil_world.py).

Sampling. The world is sampled when the driver publishes a state, and its messages carry
that ``joint_states`` stamp: a tracker triggered by the robot's state clock. A state is
thus ``joint_states`` + ``task_state`` of one stamp, as the twin node publishes it, which
the learner (data/transitions.py) and ``mpc_node tick_on_state`` rely on. The twin moves on
the emulator's clock, so the task state may be up to one twin period newer than the joints
the driver read a few milliseconds earlier: the skew of any unsynchronised tracker.

Episodes follow the twin node's conventions on the wall clock: at a reset ``episode`` and
``episode_start`` (``stamp`` = the new episode's first state, ``frame_id`` its number) are
published, then that state's ``task_state``, without a reward; the next states carry
rewards. The first state of an episode is the first ``joint_states`` stamped at least
:data:`RESET_SETTLE_NS` after the emulator applied the reset; states in between get no
``task_state`` (the learner drops such unpaired states rather than guess their episode).
An episode ends after ``episode_steps`` states or when the task is done.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from dexmpc_ros.core.rate import RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.robots.hil_world import HilWorld
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare, parse_options
from dexmpc_ros.ros.world_topics import WorldTopics
#: A state stamped this soon after a reset may have been read before it [ns]: the driver
#: stamps after its read returns (a sync read or telemetry wait takes a few ms).
RESET_SETTLE_NS = 20_000_000


@dataclass(frozen=True)
class HilWorldNodeConfig:
    """
    HIL world node settings.

    Attributes:
        task: twin task (widowx: reach; roach: waypoints, straight, figure8); '' = default.
        seed: RNG seed of the first episode (-1: random); episode i uses seed + i.
        episode_steps: states per episode before an automatic reset (0 = never).
        twin_options: extra twin constructor options as a YAML mapping string.
        port: path of the emulated serial port (a symlink); '' = a fresh temporary path.
            dexmpc up passes <run folder>/dev/<the robot YAML's port name>.
    """

    task: str = ''
    seed: int | None = None
    episode_steps: int = 0
    twin_options: str = '{}'
    port: str = ''

    def __post_init__(self) -> None:
        if self.episode_steps < 0:
            raise ValueError(f'episode_steps must be >= 0, got {self.episode_steps}')


class HilWorldNode(Node):
    """Adapter: driver's joint_states -> HilWorld.observe -> task_state/reward/odom/episodes."""

    def __init__(self) -> None:
        super().__init__('hil_world')
        self.spec = load_robot_spec(declare(self, 'robot', 'widowx', 'robot spec name or path'))
        self.cfg = config_from_node(self, HilWorldNodeConfig)
        options = parse_options(self.cfg.twin_options, f'node {self.get_name()}: twin_options')
        if self.cfg.task:
            options['task'] = self.cfg.task
        port = self.cfg.port or os.path.join(tempfile.mkdtemp(prefix='dexmpc-hil-'),
                                             os.path.basename(self.spec.driver.get(
                                                 'port', 'ttyEMU0')))
        self._episode = 0
        self.world = HilWorld(self.spec.name, port, options, self._seed(0), self.spec)

        self._awaiting = self.world.observe().resets     # resets that start the next episode
        self._episode_step = 0
        self._episode_return = 0.0
        self._last_reward = 0.0
        self._last_stamp = -1
        self._reset_requested = False
        self._rate = RateMeter()
        self._skipped = 0

        self.topics = WorldTopics(self, odom=self.world.observe().odom is not None)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_subscription(JointState, 'joint_states', self._on_joint_states, 10)
        self.create_service(Trigger, 'reset_episode', self._on_reset)
        self.create_timer(1.0, self._publish_diagnostics)
        self.world.start()
        self.get_logger().info(
            f'{self.spec.name} world behind the wire: emulator on {self.world.path}, '
            f'task state {self.world.observe().task_names}')

    def _seed(self, episode: int) -> int | None:
        return None if self.cfg.seed is None else self.cfg.seed + episode

    # Callbacks ---------------------------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        self._reset_requested = True
        response.success = True
        response.message = f'episode {self._episode + 1} starts at the next state'
        return response

    def _on_joint_states(self, msg: JointState) -> None:
        stamp = convert.time_to_ns(msg.header.stamp)
        if stamp <= self._last_stamp:
            return                                   # stamps of a state strictly increase
        if self._reset_requested:
            self._reset_requested = False
            self._start_reset()
        sample = self.world.observe()
        first = self._awaiting is not None
        if first:
            if sample.resets < self._awaiting or stamp < sample.reset_ns + RESET_SETTLE_NS:
                self._skipped += 1                   # read before the reset took effect
                return
            self._awaiting = None
            self._episode_step = 0
            self._episode_return = 0.0
            self.topics.episode(stamp, self._episode)
        self._last_stamp = stamp
        self._rate.tick()
        self.topics.state(stamp, sample.task_names, sample.task_values, sample.odom)
        if first:
            return
        self._episode_step += 1
        self._last_reward = sample.reward
        self._episode_return += sample.reward
        self.topics.reward(sample.reward)
        if sample.done or (self.cfg.episode_steps and
                           self._episode_step >= self.cfg.episode_steps):
            self._start_reset()

    def _start_reset(self) -> None:
        """Ask the emulator for the next episode; its first state is awaited."""
        if self._awaiting is not None:
            return                                   # one already on its way
        self._episode += 1
        self._awaiting = self.world.observe().resets + 1
        self.world.request_reset(self._seed(self._episode))

    def _publish_diagnostics(self) -> None:
        if self._rate.count == 0:
            level, message = 'warn', f'waiting for the driver\'s joint_states ({self.world.path})'
        else:
            level, message = 'ok', f'{self.spec.name} world, episode {self._episode}'
        sample = self.world.observe()
        self.pub_diag.publish(
            level, message,
            {'rate_hz': self._rate.rate_hz(), 'states': self._rate.count,
             'episode': self._episode, 'episode_step': self._episode_step,
             'reward': self._last_reward, 'episode_return': self._episode_return,
             'states_skipped_at_reset': self._skipped, 'twin_time_s': sample.twin_time_s,
             'port': self.world.path, **self.world.stats()},
            hardware_id=f'emulated {self.spec.name}')

    def destroy_node(self) -> None:
        """Stop the emulator (the port disappears) and free the twin."""
        if hasattr(self, 'world'):
            self.world.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the HIL world node."""
    return run_node(HilWorldNode, args)


if __name__ == '__main__':
    sys.exit(main())
