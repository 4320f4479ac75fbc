"""
Learner node: retrains the dynamics model from the run's bag and publishes better models.

Counts finished episodes on ``episode`` (the twin's or driver's reset counter). After
``first_after_episodes`` and then every ``every_episodes`` more, it trains on a background
thread with ``models.training.train_from_bags`` on everything the recorder has written so
far (the bag's closed segments, so data aggregates across iterations as in PDDM/MBMF),
validates on held-out episodes against the model in use, and saves the checkpoint into the
store. The store's current model is published on ``learner/checkpoint`` (latched) whenever
it changes: after an accepted training, and after ``dexmpc rollback`` on the store.

Parameters: ``bag_dir`` and ``store_dir`` (``dexmpc up`` fills both from the run folder:
``<run>/bag``, ``<run>/models``), the schedule, and ``train.*`` (models.training.TrainConfig;
the model's own settings, a DynamicsConfig, are ``train.model.*``: ``train.model.epochs``).

Shutdown: ``destroy_node`` asks a running training to stop after its current epoch and waits
up to :data:`STOP_TIMEOUT_S` for the thread. A training stopped this way saves nothing (no
checkpoint, no history entry): a model trained for part of its epochs is not the one the
schedule asked for. Letting the interpreter exit with the thread still inside torch aborts
the process (``terminate called without an active exception``, exit -6). A stop that
arrives after the last epoch lets the training finish validating and saving within the same
wait. The diagnostics' ``epoch`` counts the epochs the running (or last) training finished.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile
from std_msgs.msg import Int32, String

from dexmpc_ros.core.errors import BagError, CheckpointError
from dexmpc_ros.core.robot_spec import load_robot_spec
from dexmpc_ros.learning.store import CheckpointStore
from dexmpc_ros.learning.dynamics.training import TrainConfig, train_from_bags
from dexmpc_ros.ros.diagnostics import DiagnosticsPublisher
from dexmpc_ros.ros.node_main import run_node
from dexmpc_ros.ros.params import config_from_node, declare

#: How long ``destroy_node`` waits for a stopping training thread [s]; one epoch must fit
#: (the runner kills a node that ignores SIGINT for 10 s).
STOP_TIMEOUT_S = 5.0


class _Stopped(Exception):
    """Raised between epochs to abandon a training at shutdown, before anything is saved."""


@dataclass(frozen=True)
class LearnerConfig:
    """
    Where the learner reads and writes, and when it trains.

    Attributes:
        bag_dir: the recorder's bag directory (filled by ``dexmpc up``).
        store_dir: checkpoint store directory (filled by ``dexmpc up``).
        first_after_episodes: finished episodes before the first training.
        every_episodes: finished episodes between trainings after that.
        min_improvement: a new model must cut the validation error by this fraction.
        poll_s: how often the store is checked for a rollback [s].
    """

    bag_dir: str = ''
    store_dir: str = ''
    first_after_episodes: int = 5
    every_episodes: int = 3
    min_improvement: float = 0.0
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if not (self.bag_dir and self.store_dir):
            raise ValueError('bag_dir and store_dir must be set (dexmpc up sets them)')
        for name in ('first_after_episodes', 'every_episodes'):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        if not self.poll_s > 0:
            raise ValueError(f'poll_s must be > 0, got {self.poll_s!r}')


class LearnerNode(Node):
    """Adapter: episode counter -> train_from_bags (thread) -> learner/checkpoint."""

    def __init__(self) -> None:
        super().__init__('learner')
        self.spec = load_robot_spec(declare(self, 'robot', 'hand24', 'robot spec name or path'))
        self.config = config_from_node(self, LearnerConfig)
        self.train_config = config_from_node(self, TrainConfig, prefix='train.')
        self.store = CheckpointStore(self.config.store_dir, self.config.min_improvement)
        self._lock = threading.Lock()
        self._training: threading.Thread | None = None
        self._stop = threading.Event()
        self.epoch = -1
        self._finished = 0
        self._trained_at: int | None = None
        self.iterations = 0
        self.last_result = ''
        self.last_error = ''
        self.last_train_s = 0.0
        self._published = ''

        latched = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_checkpoint = self.create_publisher(String, 'learner/checkpoint', latched)
        self.pub_diag = DiagnosticsPublisher(self)
        self.create_subscription(Int32, 'episode', self._on_episode, latched)
        self.create_timer(self.config.poll_s, self._publish_current)
        self.create_timer(1.0, self._publish_diagnostics)
        self._publish_current()
        self.get_logger().info(
            f'learner for {self.spec.name}: first training after '
            f'{self.config.first_after_episodes} episodes, then every '
            f'{self.config.every_episodes}; bag {self.config.bag_dir}, '
            f'store {self.config.store_dir}')

    def _on_episode(self, msg: Int32) -> None:
        self._finished = max(self._finished, int(msg.data))  # episode k started: k finished
        due = (self._trained_at is None and self._finished >= self.config.first_after_episodes
               or self._trained_at is not None
               and self._finished - self._trained_at >= self.config.every_episodes)
        idle = self._training is None or not self._training.is_alive()
        if due and idle and not self._stop.is_set():
            self._trained_at = self._finished
            self._training = threading.Thread(target=self._train, daemon=True)
            self._training.start()

    def _on_epoch(self, epoch: int, loss: float) -> None:
        """Progress for the diagnostics; abandon the training once the node is stopping."""
        with self._lock:
            self.epoch = epoch
        if self._stop.is_set():
            # An exception, not the callback's True: train_from_bags would still validate,
            # save and propose a model stopped early.
            epochs = self.train_config.model.epochs
            raise _Stopped(f'stopped after epoch {epoch + 1} of {epochs}')

    def _train(self) -> None:
        start = time.monotonic()
        with self._lock:
            self.epoch = -1
        try:
            result = train_from_bags([self.config.bag_dir], self.spec, self.store,
                                     self.train_config, on_epoch=self._on_epoch)
        except _Stopped as exc:
            self.get_logger().info(f'training abandoned at shutdown ({exc}): nothing saved')
            return
        except (BagError, CheckpointError, ValueError) as exc:
            with self._lock:
                self.last_error = f'training failed: {exc}'
            self.get_logger().error(f'training failed (will retry next time): {exc}')
            return
        with self._lock:
            self.iterations += 1
            self.last_train_s = time.monotonic() - start
            self.last_result = (f'{Path(result.checkpoint).name}: score '
                                f'{result.metrics["score"]:.4g} '
                                f'{"accepted" if result.entry.accepted else "refused"}')
            self.last_error = ''
        self.get_logger().info(f'iteration {self.iterations} ({self.last_train_s:.0f} s): '
                               f'{result.entry.reason}')

    def destroy_node(self) -> None:
        """Stop a running training (nothing of it is saved), wait for its thread, destroy."""
        self._stop.set()
        training = self._training
        if training is not None and training.is_alive():
            training.join(STOP_TIMEOUT_S)
            if training.is_alive():
                self.get_logger().error(f'training thread still running after '
                                        f'{STOP_TIMEOUT_S:g} s; exiting anyway')
        super().destroy_node()

    def _publish_current(self) -> None:
        """Publish the store's current model when it changed (training or rollback)."""
        try:
            current = CheckpointStore(self.config.store_dir).current()
        except CheckpointError as exc:
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        if current is not None and current.path != self._published:
            self._published = current.path
            self.pub_checkpoint.publish(String(data=current.path))
            self.get_logger().info(f'published {current.path}')

    def _publish_diagnostics(self) -> None:
        with self._lock:
            values = {'rate_hz': 0.0, 'episodes': self._finished,
                      'iterations': self.iterations, 'training': bool(
                          self._training is not None and self._training.is_alive()),
                      'epoch': self.epoch + 1,
                      'current': self._published or '(none)', 'last': self.last_result,
                      'last_train_s': self.last_train_s, 'last_error': self.last_error}
        level = 'warn' if values['last_error'] else 'ok'
        message = values['last_error'] or values['last'] or 'collecting episodes'
        self.pub_diag.publish(level, message, values)


def main(args: list[str] | None = None) -> int:
    """Run the learner node."""
    return run_node(LearnerNode, args)


if __name__ == '__main__':
    sys.exit(main())
