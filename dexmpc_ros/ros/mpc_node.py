"""
MPC node: learned-dynamics MPC at the control rate, with hot-swapped checkpoints.

Reads ``joint_states`` + ``task_state``; each tick plans with ``control.mpc.MPCController``
and publishes ``command_raw`` stamped with the observation it used, the member-mean
predicted joint positions on ``controller/plan`` and the ensemble disagreement on
``controller/uncertainty`` (the safety supervisor's opt-in hooks read both). A new
``episode`` resets the planner's warm start; with ``eval_every`` = k, episodes whose number
is a multiple of k run without ``action_noise`` (evaluation episodes; the report and
bench/reproduce_pddm_valve.py count them apart).

Checkpoints: the ``checkpoint`` parameter names one to start with (empty: publish nothing
until one arrives, so the supervisor holds the robot; or, with ``explore``, run PDDM's
random walk until then). A path on ``learner/checkpoint``
(std_msgs/String) is loaded and verified on a background thread (robot and action names
must match; a corrupt or mismatched checkpoint is refused with the reason on
``diagnostics`` and the running model stays); the next tick swaps it in.

Ticks. By default a timer at the control rate plans on the newest observation; ticks that
come later than ``MISSED_TICK_PERIODS`` (core/rate.py) periods after the previous one are
counted as missed. With ``tick_on_state`` the node plans once per new observation instead
(``joint_states`` and, once the robot has published one, the ``task_state`` of the same
stamp; subscriptions keep only the newest message, so a slow plan skips states rather than
queueing them), and counts every state it never answered (stamp gaps over that many
periods) as missed. That is the mode for a twin in lockstep (twin_node.py), which steps
only once its last state is answered: a timer would plan on the previous state as soon as
/clock moves and never answer the newest one. Missed ticks are logged; those that fall
while a checkpoint is loading or in the two ticks of its swap are counted apart too
(``missed_in_swaps`` on diagnostics), since a swap must cost none.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Int32, String
from trajectory_msgs.msg import JointTrajectory

from dexmpc_ros.control.mpc import MPCConfig, MPCController
from dexmpc_ros.control.random_walk import RandomWalkConfig, RandomWalkController
from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.rate import MISSED_TICK_PERIODS, RateMeter
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.learning.checkpoint import load_checkpoint
from dexmpc_ros.ros import convert
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare

#: Recent ticks whose planning time and interval the diagnostics summarise.
WINDOW = 200


class MPCNode(Node):
    """Adapter: joint_states/task_state -> MPCController -> command_raw, plan, uncertainty."""

    def __init__(self) -> None:
        super().__init__('mpc')
        self.spec = load_robot_spec(declare(self, 'robot', 'hand24', 'robot spec name or path'))
        self.config = config_from_node(self, MPCConfig)
        start = declare(self, 'checkpoint', '', 'checkpoint directory to start with ('
                        '"" = wait for learner/checkpoint)')
        explore = declare(self, 'explore', False, 'random-walk exploration (random_walk.* '
                          'parameters) until the first checkpoint arrives')
        self.tick_on_state = declare(self, 'tick_on_state', False,
                                     'plan once per new observation instead of on a timer')
        explorer = (RandomWalkController(self.spec, config_from_node(
            self, RandomWalkConfig, prefix='random_walk.')) if explore else None)
        self.mpc = MPCController(self.spec, self.config, explorer=explorer)
        self.period_s = self.spec.period_s
        self._joints: JointState | None = None
        self._task: JointState | None = None
        self._pending: tuple | None = None  # (model, layout, reward, path): loader thread
        self._lock = threading.Lock()
        self.checkpoint = ''
        self.last_error = ''
        self.swaps = 0
        self.refused = 0
        self.missed_ticks = 0
        self.missed_in_swaps = 0  # of those, missed while a checkpoint loaded or swapped in
        self._loading = 0  # loader threads running
        self._ticks_after_swap = 0  # the swap's tick and the next still count as "in a swap"
        self._last_tick: float | None = None
        self._last_state_stamp: int | None = None
        self._plan_ms: deque[float] = deque(maxlen=WINDOW)
        self._rate = RateMeter()

        self.pub_command = self.create_publisher(JointTrajectory, 'command_raw', 10)
        self.pub_plan = self.create_publisher(JointTrajectory, 'controller/plan', 10)
        self.pub_uncertainty = self.create_publisher(JointState, 'controller/uncertainty', 10)
        self.pub_diag = DiagnosticsPublisher(self)
        depth = 1 if self.tick_on_state else 10
        self.create_subscription(JointState, 'joint_states', self._on_joints, depth)
        self.create_subscription(JointState, 'task_state', self._on_task, depth)
        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Int32, 'episode', self._on_episode, latched)
        self.create_subscription(String, 'learner/checkpoint', self._on_checkpoint, latched)
        if not self.tick_on_state:
            self.create_timer(self.period_s, self._tick)
        self.create_timer(1.0, self._publish_diagnostics)
        if start:
            self._load(start)  # at start-up, synchronously: fail early and loudly
            self._swap_pending()
        self.get_logger().info(
            f'{self.config.planner} MPC for {self.spec.name} ({self.config.task}), '
            f'N={self.config.samples} H={self.config.horizon}, '
            f'checkpoint: {self.checkpoint or "waiting for learner/checkpoint"}')

    # Inputs ------------------------------------------------------------------------------
    def _on_joints(self, msg: JointState) -> None:
        self._joints = msg
        if self.tick_on_state:
            self._tick_if_new_state()

    def _on_task(self, msg: JointState) -> None:
        self._task = msg
        if self.tick_on_state:
            self._tick_if_new_state()

    def _on_episode(self, msg: Int32) -> None:
        self.mpc.reset(msg.data)

    def _on_checkpoint(self, msg: String) -> None:
        if msg.data and msg.data != self.checkpoint:
            with self._lock:
                self._loading += 1
            threading.Thread(target=self._load_in_background, args=(msg.data,),
                             daemon=True).start()

    def _load_in_background(self, path: str) -> None:
        try:
            self._load(path)
        finally:
            with self._lock:
                self._loading -= 1

    def _load(self, path: str) -> None:
        """Load and verify a checkpoint (any thread); success leaves it pending for a tick."""
        try:
            model, manifest = load_checkpoint(path, expect_robot=self.spec.name,
                                              expect_action_names=self.spec.command_names)
            layout = StateLayout(tuple(manifest['state_names']))
            trained = manifest.get('extra', {}).get('action_space', 'absolute')
            if trained != self.config.action_space:
                raise CheckpointError(f'{path}: trained with {trained} actions, this node '
                                      f'plans {self.config.action_space} actions')
            reward = self.mpc.task_reward(layout)  # here, not on the tick (Baoding: ~0.3 s)
        except (CheckpointError, ValueError) as exc:
            with self._lock:
                self.refused += 1
                self.last_error = str(exc)
            self.get_logger().error(f'checkpoint refused, keeping the current model: {exc}')
            return
        with self._lock:
            self._pending = (model, layout, reward, path)

    def _swap_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            model, layout, reward, path = pending
            self.mpc.swap(model, layout, reward)
            self.checkpoint = path
            self.swaps += 1
            self._ticks_after_swap = 2
            self.get_logger().info(f'now planning with {path}')

    # Control loop ------------------------------------------------------------------------
    def _tick_if_new_state(self) -> None:
        """tick_on_state: plan when joints (and task state) of a new stamp are both in."""
        if self._joints is None:
            return
        stamp = convert.time_to_ns(self._joints.header.stamp)
        if self._task is not None and convert.time_to_ns(self._task.header.stamp) != stamp:
            return  # the other half of this observation is still on its way
        last = self._last_state_stamp
        if last is not None and stamp <= last:
            return
        if last is not None:
            periods = (stamp - last) * 1e-9 / self.period_s
            if periods > MISSED_TICK_PERIODS:
                self._count_missed(int(round(periods)) - 1, stamp - last)
        self._last_state_stamp = stamp
        self._plan()

    def _tick(self) -> None:
        now = time.monotonic()
        last = self._last_tick
        if last is not None and now - last > MISSED_TICK_PERIODS * self.period_s:
            self._count_missed(1, int((now - last) * 1e9))
        self._last_tick = now
        self._plan()

    def _count_missed(self, ticks: int, gap_ns: int) -> None:
        """Count missed ticks; those while a checkpoint loads or swaps in also apart."""
        with self._lock:
            in_swap = self._loading > 0 or self._pending is not None
        in_swap = in_swap or self._ticks_after_swap > 0
        self.missed_ticks += ticks
        self.missed_in_swaps += ticks if in_swap else 0
        where = ' during a checkpoint swap' if in_swap else ''
        self.get_logger().warning(
            f'missed {ticks} control tick(s){where}: {gap_ns * 1e-6:.0f} ms since the last '
            f'one (period {self.period_s * 1e3:.0f} ms)', throttle_duration_sec=2.0)

    def _plan(self) -> None:
        self._ticks_after_swap = max(0, self._ticks_after_swap - 1)
        self._swap_pending()
        if self._joints is None:
            return
        try:
            obs = convert.observation(self._joints, self._task, self.spec.joint_names)
            command = self.mpc.act(obs)
        except (KeyError, ValueError) as exc:
            self.last_error = str(exc)
            self.get_logger().error(f'cannot plan: {exc}', throttle_duration_sec=2.0)
            return
        if command is None:
            return
        self.pub_command.publish(convert.command_msg(
            obs.stamp_ns, self.spec.command_names, command, self.spec.command_interface))
        self._rate.tick()
        if self.mpc.exploring:
            return
        info = self.mpc.info
        self._plan_ms.append(info.get('plan_time_ms', float('nan')))
        names, positions = self.mpc.predicted_joint_positions()
        if names:
            self.pub_plan.publish(convert.plan_msg(obs.stamp_ns, names, positions,
                                                   self.period_s))
        self.pub_uncertainty.publish(convert.joint_state_msg(
            obs.stamp_ns, ['uncertainty', 'predicted_return'],
            [info['uncertainty'], info.get('best_return', float('nan'))]))

    def _publish_diagnostics(self) -> None:
        plan = np.array(self._plan_ms) if self._plan_ms else np.array([np.nan])
        with self._lock:
            error, refused = self.last_error, self.refused
        values = {'rate_hz': self._rate.rate_hz(), 'commands': self._rate.count,
                  'planner': self.config.planner, 'checkpoint': self.checkpoint or '(none)',
                  'swaps': self.swaps, 'refused': refused, 'missed_ticks': self.missed_ticks,
                  'missed_in_swaps': self.missed_in_swaps,
                  'plan_ms_p50': float(np.nanpercentile(plan, 50)) if self._plan_ms else 0.0,
                  'plan_ms_p99': float(np.nanpercentile(plan, 99)) if self._plan_ms else 0.0,
                  'uncertainty': self.mpc.uncertainty, 'last_error': error,
                  'exploring': self.mpc.exploring, 'evaluating': self.mpc.evaluating}
        if not self.checkpoint and self.mpc.exploring:
            level, message = 'ok', 'exploring (random walk) until the first checkpoint'
        elif not self.checkpoint:
            level, message = 'warn', 'no model yet: waiting for learner/checkpoint'
        elif error:
            level, message = 'warn', error
        else:
            level, message = 'ok', f'planning with {self.checkpoint}'
        self.pub_diag.publish(level, message, values)


def main(args: list[str] | None = None) -> int:
    """Run the MPC node."""
    return run_node(MPCNode, args)


if __name__ == '__main__':
    sys.exit(main())
