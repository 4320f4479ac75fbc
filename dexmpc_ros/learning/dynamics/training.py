"""
Train a dynamics model from bags, validate it, and propose it to a checkpoint store.

One function serves ``dexmpc train`` (offline, any rosbag2 directories, including bags a
real robot recorded with ``ros2 bag record``) and the learner node (online, the run's
finished episodes)::

    bags -> transitions (data/transitions.py) -> split by episode (train / held out)
         -> fit a new ensemble (learning/dynamics/model.py)
         -> validation: H-step open-loop error on the held-out episodes, for the new model
            AND for the model in use, on the same episodes (a fair comparison)
         -> save a checkpoint (atomic) and propose it: accepted only if it is better
         -> loss-curve PNG next to it

The score is the mean H-step prediction error in units of the states' std per dimension
over all the data (lower is better); both models are measured in the same units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dexmpc_ros.core.action_space import check_action_space
from dexmpc_ros.core.errors import BagError, CheckpointError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import TASK, StateLayout
from dexmpc_ros.data.transitions import Transitions, transitions_from_bags
from dexmpc_ros.learning.checkpoint import load_checkpoint, save_checkpoint
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.store import CheckpointStore, Entry


def learner_model() -> DynamicsConfig:
    """The model a training fits by default: DynamicsConfig's defaults on 1 torch thread."""
    return DynamicsConfig(threads=1)


@dataclass(frozen=True)
class TrainConfig:
    """
    Learner settings (PDDM: papers.md §7.3; ``dexmpc train`` flags, learner parameters).

    Attributes:
        model: the ensemble and its fitting (members, widths, epochs, batch size, lr,
            training noise, seed, torch threads): a :class:`DynamicsConfig`, saved in the
            checkpoint; the learner node's ``train.model.*`` parameters.
        holdout: fraction of episodes held out for validation (the newest ones).
        horizon: H of the validation's open-loop prediction error.
        action_space: how commands become model actions: ``absolute`` or ``delta``
            (core/action_space.py); stored in the manifest, the MPC must use the same.
    """

    model: DynamicsConfig = field(default_factory=learner_model)
    holdout: float = 0.2
    horizon: int = 7
    action_space: str = 'absolute'

    def __post_init__(self) -> None:
        check_action_space(self.action_space)
        if not isinstance(self.model, DynamicsConfig):
            raise ValueError(f'model must be a DynamicsConfig, got {self.model!r}')
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f'holdout must be in (0, 1), got {self.holdout!r}')
        if not (isinstance(self.horizon, int) and self.horizon >= 1):
            raise ValueError(f'horizon must be an int >= 1, got {self.horizon!r}')


@dataclass
class TrainResult:
    """What one training produced: the store entry, its metrics and files."""

    entry: Entry
    checkpoint: Path
    metrics: dict[str, Any]
    losses: list[float]
    plot: Path | None


def train_from_bags(bags: Sequence[str | Path], spec: RobotSpec, store: CheckpointStore,
                    config: TrainConfig | None = None,
                    on_epoch: Callable[[int, float], Any] | None = None,
                    plot: bool = True,
                    task_names: Sequence[str] | None = None) -> TrainResult:
    """
    Train on ``bags``, validate, save a checkpoint into ``store`` and propose it.

    Args:
        bags: rosbag2 directories.
        spec: the robot the bags recorded.
        store: where checkpoints and their history live.
        config: learner settings.
        on_epoch: progress callback (epoch index, mean loss).
        plot: save the loss curve as ``<checkpoint>-loss.png`` next to the checkpoint.
        task_names: task entries of the state, as ``transitions_from_bag`` takes them
            (``()``: joint_states alone); the current model's layout, if any, wins.

    Raises:
        BagError: a bag is missing, corrupt or empty, or the bags hold fewer than two
            episodes with transitions (one to train, one held out); nothing is saved.
        CheckpointError: ``task_names`` disagree with the current model's layout.
    """
    config = config or TrainConfig()
    current = store.current()
    layout = None
    if current is not None:  # train on the layout the running controller uses
        try:
            _, manifest = load_checkpoint(current.path, expect_robot=spec.name)
            layout = StateLayout(tuple(manifest['state_names']))
        except CheckpointError:
            current = None  # an unreadable current model cannot be the baseline
    if layout is not None and task_names is not None:
        _check_task_names(layout, task_names, current)
    data, sources = transitions_from_bags(bags, spec, task_names, layout=layout,
                                          action_space=config.action_space)
    train, validation = data.split_by_episode(_newest(data, config.holdout))
    if len(train) == 0 or len(validation) == 0:
        raise BagError(f'record longer: {len(data.episode_ids())} episode(s) with '
                       f'transitions in {len(sources)} bag(s), need at least 2 (one to '
                       f'train, one held out)')
    model = DeltaDynamics(len(data.state_names), len(data.action_names), config.model)
    losses = model.fit(train.states, train.actions, train.next_states, on_epoch=on_epoch)
    unit = _error_unit(data)
    metrics = _validate(model, validation, config.horizon, unit)
    baseline = _baseline(current, validation, config.horizon, spec, unit)
    if baseline is not None:
        metrics['current_score'] = baseline
    path = save_checkpoint(store.next_path(), model, {
        'state_names': list(data.state_names), 'action_names': list(data.action_names),
        'robot': spec.name, 'source_bags': [str(s) for s in sources],
        'metrics': metrics, 'extra': {'train_config': _jsonable(asdict(config)),
                                      'action_space': config.action_space,
                                      'train_transitions': len(train),
                                      'validation_transitions': len(validation),
                                      'losses': losses}})
    entry = store.propose(path, metrics, baseline,
                          baseline_path=current.path if current is not None else None)
    figure = _plot_losses(losses, metrics, path) if plot else None
    return TrainResult(entry, path, metrics, losses, figure)


def _check_task_names(layout: StateLayout, task_names: Sequence[str], current: Entry) -> None:
    """The model in use fixes the layout: refuse other task entries than its own."""
    used = [n[len(TASK):] for n in layout.names if n.startswith(TASK)]
    if used != list(task_names):
        raise CheckpointError(f'{current.path}: the model in use has task entries {used}, '
                              f'not {list(task_names)}; train into another store')


def _newest(data: Transitions, fraction: float) -> list[int]:
    """
    The newest episodes, ``fraction`` of them (at least one, never all), for validation.

    Newest, not random: the model in use was trained on older episodes, so only episodes
    recorded since then are held out for both models (a random pick would test the old
    model on its own training data and favour it).
    """
    ids = sorted(int(i) for i in data.episode_ids())
    count = min(max(1, math.ceil(fraction * len(ids))), len(ids) - 1)
    return ids[len(ids) - count:] if count > 0 else []


def _validate(model: DeltaDynamics, validation: Transitions, horizon: int,
              unit: np.ndarray) -> dict[str, Any]:
    episodes = validation.episodes()
    longest = max((len(actions) for _, actions in episodes), default=0)
    h = min(horizon, longest)
    if h < 1:
        raise ValueError('validation episodes have no transitions')
    error = model.multi_step_error(episodes, h, scale=unit)
    return {'score': float(error['mean']), 'horizon': h, 'final': float(error['final']),
            'per_step': [float(e) for e in error['per_step']], 'windows': error['windows']}


def _error_unit(data: Transitions) -> np.ndarray:
    """
    Per-dimension std of all the states (1 where constant): one unit for both models.

    All the data, not only the held-out part: a few held-out episodes can leave a dimension
    nearly constant, and dividing by its tiny std made scores jump by 50x between trainings.
    """
    std = data.states.std(axis=0)
    return np.where(std > 1e-6, std, 1.0)


def _baseline(current: Entry | None, validation: Transitions, horizon: int,
              spec: RobotSpec, unit: np.ndarray) -> float | None:
    """The current model's score on the same held-out episodes (None without one)."""
    if current is None:
        return None
    try:
        model, _ = load_checkpoint(current.path, expect_robot=spec.name,
                                   expect_state_names=validation.state_names,
                                   expect_action_names=validation.action_names)
    except CheckpointError:
        return None
    score = _validate(model, validation, horizon, unit)['score']
    return score if math.isfinite(score) else None


def _plot_losses(losses: list[float], metrics: dict[str, Any], path: Path) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(range(1, len(losses) + 1), losses)
    left.set_yscale('log')
    left.set_xlabel('epoch')
    left.set_ylabel('training loss (normalized)')
    per_step = metrics['per_step']
    right.plot(range(1, len(per_step) + 1), per_step, marker='o', label='new model')
    if 'current_score' in metrics:
        right.axhline(metrics['current_score'], color='gray', ls='--',
                      label='model in use (mean)')
    right.set_xlabel('prediction step')
    right.set_ylabel('held-out error (state stds)')
    right.legend()
    fig.suptitle(f'{path.name}: score {metrics["score"]:.4g}')
    fig.tight_layout()
    out = path.parent / f'{path.name}-loss.png'
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
