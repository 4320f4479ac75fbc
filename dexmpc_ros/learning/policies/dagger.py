"""
DAgger distillation of a teacher controller (MBMF's MPC) into an :class:`MLPPolicy`.

MBMF's MB→MF stage (papers.md §1.2, ``mbmf.py``)::

    D <- teacher's (state, action) pairs (the saved MPC rollouts)
    fit π on D
    repeat `iterations` times:
        roll out π (its mean action) for `rollouts_per_iteration` episodes
        relabel every visited state with the teacher's action; D <- D ∪ relabeled
        fit π on D (continuing from its weights, input statistics refitted)
    evaluate π for `eval_episodes` episodes

Behaviour cloning alone sees only the teacher's state distribution; the policy's own small
errors take it to states the teacher never visited, where it has no label. DAgger labels
exactly those states.

The environment is a :class:`~dexmpc_ros.runtime.sim_loop.StepEnv` (normalized actions);
the teacher is ``teacher(state) -> action`` on the env state; the policy sees
``observe(state)`` (e.g. the state without the root's x position, which a translation-
invariant task does not need and which drifts out of the training range). Each episode
stops at ``episode_steps`` or when the env reports done. ``relabel_stride`` > 1 labels
only every k-th visited state (the teacher, an MPC, costs ~100 ms per call; neighbouring
states of one trajectory carry nearly the same information).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dexmpc_ros.learning.policies.mlp import MLPPolicy

Teacher = Callable[[np.ndarray], np.ndarray]
Observe = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DaggerConfig:
    """
    DAgger settings (MBMF cheetah: 3 iterations × 300 epochs, 2 rollouts per iteration).

    Attributes:
        iterations: relabel-and-retrain rounds.
        rollouts_per_iteration: policy episodes relabeled per round.
        episode_steps: control steps per episode (fewer if the env says done).
        epochs: epochs of every fit (None: the policy config's).
        relabel_stride: label every k-th visited state (1: all, as MBMF).
        eval_episodes: episodes of the final policy after the last fit.
        seed: episode seeds are ``seed * 100000 + index`` (rollouts and evaluation).
    """

    iterations: int = 3
    rollouts_per_iteration: int = 2
    episode_steps: int = 1000
    epochs: int | None = None
    relabel_stride: int = 1
    eval_episodes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (('iterations', 0), ('rollouts_per_iteration', 1),
                          ('episode_steps', 1), ('relabel_stride', 1), ('eval_episodes', 0),
                          ('seed', 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'{name} must be an integer >= {low}, got {value!r}')
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 0):
            raise ValueError(f'epochs must be None or an integer >= 0, got {self.epochs!r}')


@dataclass
class DaggerIteration:
    """
    One round: the policy's rollouts, then the relabeling and refit.

    Attributes:
        iteration: round index (0-based).
        returns: the policy's return in each rollout (before this round's refit).
        labeled: states relabeled by the teacher this round.
        dataset_size: pairs after aggregation.
        final_loss: last epoch's training loss of the refit.
        teacher_ms: mean wall time per teacher call.
    """

    iteration: int
    returns: list[float]
    labeled: int
    dataset_size: int
    final_loss: float
    teacher_ms: float


@dataclass
class DaggerResult:
    """What :func:`run_dagger` leaves."""

    policy: MLPPolicy
    initial_loss: float
    iterations: list[DaggerIteration]
    eval_returns: list[float]
    observations: np.ndarray
    actions: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def rollout(env: Any, act: Callable[[np.ndarray], np.ndarray], steps: int, seed: int
            ) -> tuple[np.ndarray, float]:
    """
    One episode of ``act(state) -> action``: the visited states (T, nx) and the return.

    The states are those the actions were taken in (s_0..s_{T-1}).
    """
    state = env.reset(seed)
    states, total = [], 0.0
    for _ in range(steps):
        states.append(state)
        state, reward, done = env.step(np.asarray(act(state), dtype=np.float64))
        total += reward
        if done:
            break
    return np.asarray(states), total


def run_dagger(env: Any, teacher: Teacher, policy: MLPPolicy, states: np.ndarray,
               actions: np.ndarray, config: DaggerConfig | None = None,
               observe: Observe | None = None,
               on_iteration: Callable[[DaggerIteration], Any] | None = None) -> DaggerResult:
    """
    Distill ``teacher`` into ``policy`` with DAgger (module docstring).

    Args:
        env: a StepEnv.
        teacher: ``teacher(state (nx,)) -> action (m,)`` in [-1, 1].
        policy: the student (trained in place and returned).
        states: (T, nx) env states of the teacher's own data.
        actions: (T, m) the teacher's actions there.
        config: DAgger settings.
        observe: env state (..., nx) -> policy input (..., d); None: the state itself.
        on_iteration: called after each round.

    Returns:
        The trained policy, per-round figures, the final evaluation returns and the
        aggregated dataset (policy inputs, teacher actions).
    """
    config = config or DaggerConfig()
    observe = observe or (lambda s: s)
    obs = np.asarray(observe(np.asarray(states, dtype=np.float64)), dtype=np.float64)
    labels = np.asarray(actions, dtype=np.float64)
    if obs.ndim != 2 or labels.shape != (obs.shape[0], policy.action_dim):
        raise ValueError(f'need states (T, nx) and actions (T, {policy.action_dim}); got '
                         f'observations {obs.shape} and actions {labels.shape}')
    losses = policy.fit(obs, labels, epochs=config.epochs)
    initial_loss = losses[-1] if losses else float('nan')

    def student(state: np.ndarray) -> np.ndarray:
        return policy.act(observe(state))

    episode = 0
    rounds: list[DaggerIteration] = []
    for iteration in range(config.iterations):
        returns, visited = [], []
        for _ in range(config.rollouts_per_iteration):
            seen, ret = rollout(env, student, config.episode_steps,
                                config.seed * 100000 + episode)
            episode += 1
            returns.append(ret)
            visited.append(seen[::config.relabel_stride])
        new_states = np.concatenate(visited)
        start = time.perf_counter()
        new_labels = np.stack([np.asarray(teacher(s), dtype=np.float64) for s in new_states])
        teacher_ms = 1e3 * (time.perf_counter() - start) / len(new_states)
        obs = np.concatenate([obs, observe(new_states)])
        labels = np.concatenate([labels, new_labels])
        losses = policy.fit(obs, labels, epochs=config.epochs)
        record = DaggerIteration(iteration, returns, len(new_states), len(obs),
                                 losses[-1] if losses else float('nan'), teacher_ms)
        rounds.append(record)
        if on_iteration is not None:
            on_iteration(record)
    eval_returns = []
    for _ in range(config.eval_episodes):
        eval_returns.append(rollout(env, student, config.episode_steps,
                                    config.seed * 100000 + episode)[1])
        episode += 1
    return DaggerResult(policy, initial_loss, rounds, eval_returns, obs, labels)
