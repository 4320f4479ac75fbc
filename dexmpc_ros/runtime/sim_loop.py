"""
The model-based RL loop in one process, without ROS: explore -> train -> plan -> aggregate.

The ROS experiments (``dexmpc up hand_pddm_valve_sim``) run this loop as separate nodes at
the robot's control rate. Here the same pieces (twin, :class:`DeltaDynamics`, the planners,
the random walk, the supervisor's per-step clamp) run back to back as fast as the CPU allows:
for tuning presets, for ablations that need many runs (filtered MPPI vs random shooting),
and for gymnasium benchmarks (MBMF on HalfCheetah). The numbers an experiment claims come
from its ROS run; this loop is where a preset is found.

An environment here is anything with :class:`StepEnv`'s methods; :class:`TwinEnv` wraps a
MuJoCo twin the way the robot sees it through the safety supervisor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Protocol

import numpy as np
import torch

from dexmpc_ros.control.planners.base import SamplingPlanner
from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler, check_action_space
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.torch_threads import torch_threads
from dexmpc_ros.runtime.episode_record import EpisodeRecord


class StepEnv(Protocol):
    """What the loop needs from an environment (normalized actions in [-1, 1]^m)."""

    action_dim: int

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode; return the state (nx,)."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Apply ``action`` (m,) for one control period: (next state, reward, done)."""

    def explore(self, rng: np.random.Generator) -> np.ndarray:
        """The exploration policy's next action (m,) in the current episode."""

    def success(self) -> bool:
        """Whether the episode so far counts as solved (task-specific)."""


class TwinEnv:
    """
    A MuJoCo twin behind the safety supervisor's per-step clamp.

    Every command passes the supervisor's step, velocity and position-box clamps
    (``DeltaActionScaler``); its workspace (WidowX) and body-rate (roach) rules are not
    modelled, so in-process results there can differ from the ROS run's. With
    ``action_space='delta'`` an action is the per-step change in units of that bound, with
    ``'absolute'`` it is a normalized joint target that the clamp may shorten. Exploration
    is an ``explorer`` controller (``act(obs) -> command``, ``reset()``), e.g. PDDM's random
    walk, whose commands are clamped the same way.

    Args:
        twin: the twin (its task gives reward and task state).
        spec: its robot spec.
        explorer: exploration controller (None: uniform random actions).
        action_space: ``delta`` or ``absolute``.
        success: ``success(task_names, task_values) -> bool`` at an episode's end.
    """

    def __init__(self, twin: Any, spec: RobotSpec, explorer: Any = None,
                 action_space: str = 'delta',
                 success: Callable[[list[str], np.ndarray], bool] | None = None) -> None:
        check_action_space(action_space)
        self.twin, self.spec, self.explorer = twin, spec, explorer
        self.delta = action_space == 'delta'
        self.scaler = ActionScaler(spec)
        self.steps = DeltaActionScaler(spec)
        self.action_dim = len(spec.command_names)
        self._success = success
        self.layout = StateLayout.for_robot(spec, twin.task_state()[0])

    def observation(self) -> Observation:
        joints = self.twin.joints()
        names, values = self.twin.task_state()
        return Observation(0, joints.position, joints.velocity, tuple(names), values)

    def state(self) -> np.ndarray:
        return self.layout.vector(self.observation(), self.spec.joint_names)

    def _measured(self) -> np.ndarray:
        joints = self.twin.joints()
        values = joints.position if self.spec.command_interface == 'position' \
            else joints.velocity
        return values[self.spec.actuated_index]

    def reset(self, seed: int) -> np.ndarray:
        self.twin.reset(seed)
        if self.explorer is not None:
            self.explorer.reset()
        return self.state()

    def command(self, action: np.ndarray) -> np.ndarray:
        """The command the supervisor lets through for ``action`` now."""
        measured = self._measured()
        if self.delta:
            return self.steps.to_command(action, measured)
        target = self.scaler.to_command(action)
        return self.steps.to_command(self.steps.to_action(target, measured), measured)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self.twin.apply_command(self.command(np.asarray(action, dtype=np.float64)))
        self.twin.step()
        return self.state(), float(self.twin.reward()), bool(self.twin.done())

    def explore(self, rng: np.random.Generator) -> np.ndarray:
        """The explorer's command as the action that produces it (what a bag records)."""
        if self.explorer is None:
            return rng.uniform(-1.0, 1.0, self.action_dim)
        command = self.explorer.act(self.observation())
        measured = self._measured()
        if self.delta:
            return np.clip(self.steps.to_action(command, measured), -1.0, 1.0)
        return np.clip(self.scaler.to_action(command), -1.0, 1.0)

    def success(self) -> bool:
        if self._success is None:
            return False
        names, values = self.twin.task_state()
        return bool(self._success(names, values))


@dataclass
class LoopConfig:
    """
    Settings of :func:`run_loop` (PDDM's outer loop, papers.md §7.2; MBMF's, §1.2).

    Attributes:
        explore_episodes: exploration episodes before the first model.
        iterations: train -> collect rounds.
        episodes_per_iteration: MPC episodes collected per round (all aggregated).
        episode_steps: control steps per episode.
        first_epochs: epochs of the first training; later trainings use ``epochs``.
        epochs: epochs of every later training (from scratch, as PDDM does by default).
        warm_start: keep training the previous model instead of starting fresh.
        action_noise: std of Gaussian noise added to executed MPC actions (MBMF: 0.005).
        eval_every: with k > 0, every k-th MPC episode of an iteration runs without the
            action noise: an evaluation episode (``EpisodeRecord.evaluation``), aggregated
            like the others, as the mpc node's ``eval_every`` does.
        seed: episode seeds are ``seed * 100000 + episode index``.
        threads: torch threads.
    """

    explore_episodes: int = 10
    iterations: int = 10
    episodes_per_iteration: int = 5
    episode_steps: int = 40
    first_epochs: int = 40
    epochs: int = 40
    warm_start: bool = False
    action_noise: float = 0.0
    eval_every: int = 0
    seed: int = 0
    threads: int = 1


class Dataset:
    """Aggregated transitions, episode by episode."""

    def __init__(self) -> None:
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.next_states: list[np.ndarray] = []
        self.on_policy: list[bool] = []

    def add(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
            on_policy: bool = False) -> None:
        self.states.append(states)
        self.actions.append(actions)
        self.next_states.append(next_states)
        self.on_policy.append(on_policy)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.states), np.concatenate(self.actions),
                np.concatenate(self.next_states))

    def is_new(self) -> np.ndarray:
        """(T,) bool: the transition came from a controller episode, not exploration."""
        return np.concatenate([np.full(len(s), new) for s, new in
                               zip(self.states, self.on_policy)])

    def __len__(self) -> int:
        return sum(len(s) for s in self.states)


def run_episode(env: StepEnv, steps: int, seed: int,
                act: Callable[[np.ndarray], np.ndarray] | None,
                rng: np.random.Generator) -> tuple[dict[str, np.ndarray], float, bool, float]:
    """
    One episode with ``act(state) -> action`` (None: the env's exploration policy).

    Returns:
        (transitions dict, return, success, mean ms per ``act`` call).
    """
    state = env.reset(seed)
    states, actions, nexts = [], [], []
    total, elapsed = 0.0, 0.0
    for _ in range(steps):
        if act is None:
            action = env.explore(rng)
        else:
            start = time.perf_counter()
            action = act(state)
            elapsed += time.perf_counter() - start
        nxt, reward, done = env.step(action)
        states.append(state)
        actions.append(action)
        nexts.append(nxt)
        total += reward
        state = nxt
        if done:
            break
    data = {'states': np.asarray(states), 'actions': np.asarray(actions),
            'next_states': np.asarray(nexts)}
    ms = 1000.0 * elapsed / len(states) if act is not None else float('nan')
    return data, total, env.success(), ms


@dataclass
class LoopResult:
    """What :func:`run_loop` leaves: every episode's record, the last model, all the data."""

    records: list[EpisodeRecord]
    model: DeltaDynamics | None
    data: Dataset


def run_loop(env: StepEnv, planner: SamplingPlanner, reward: Callable,
             model_config: DynamicsConfig, config: LoopConfig,
             on_episode: Callable[[EpisodeRecord], Any] | None = None) -> LoopResult:
    """
    Explore, then alternate training the ensemble on everything and MPC episodes.

    Args:
        env: the environment.
        planner: a sampling planner (``plan(state, model, reward) -> action``).
        reward: the planner's torch reward ``reward(states, actions, state0)``.
        model_config: dynamics model settings (ensemble, widths, noise, ...).
        config: the loop's settings.
        on_episode: called with each finished episode's record.

    Returns:
        The episodes' records in order, the last model (None without iterations) and the
        aggregated data.
    """
    rng = np.random.default_rng(config.seed)
    data = Dataset()
    records: list[EpisodeRecord] = []
    env_steps = 0

    def finish(result, iteration: int, evaluation: bool = False) -> None:
        nonlocal env_steps
        transitions, ret, success, ms = result
        data.add(transitions['states'], transitions['actions'], transitions['next_states'],
                 on_policy=iteration >= 0)
        env_steps += len(transitions['states'])
        actions = transitions['actions']
        smoothness = (float(np.mean(np.abs(np.diff(actions, axis=0)))) if len(actions) > 1
                      else float('nan'))
        record = EpisodeRecord(episode=len(records), steps=len(actions), env_steps=env_steps,
                               episode_return=ret, success=success, evaluation=evaluation,
                               iteration=iteration, plan_ms=ms, action_change=smoothness)
        records.append(record)
        if on_episode is not None:
            on_episode(record)

    def seed() -> int:
        return config.seed * 100000 + len(records)

    for _ in range(config.explore_episodes):
        finish(run_episode(env, config.episode_steps, seed(), None, rng), -1)
    model = None
    with torch_threads(config.threads):
        for iteration in range(config.iterations):
            if model is None or not config.warm_start:
                model = DeltaDynamics(data.states[0].shape[1], env.action_dim, model_config)
                epochs = config.first_epochs if iteration == 0 else config.epochs
            else:
                epochs = config.epochs
            model.fit(*data.arrays(), epochs=epochs, is_new=data.is_new())

            def act(state: np.ndarray, model=model, noise=config.action_noise) -> np.ndarray:
                action = planner.plan(torch.from_numpy(state).float(), model, reward)
                if noise > 0:
                    action = np.clip(action + rng.normal(0, noise, action.shape), -1.0, 1.0)
                return action

            for j in range(config.episodes_per_iteration):
                evaluation = config.eval_every > 0 and (j + 1) % config.eval_every == 0
                policy = partial(act, noise=0.0) if evaluation else act
                planner.reset()
                finish(run_episode(env, config.episode_steps, seed(), policy, rng), iteration,
                       evaluation)
    return LoopResult(records, model, data)
