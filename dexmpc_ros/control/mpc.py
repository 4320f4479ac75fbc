"""
Learned-dynamics MPC as a controller: observation -> state -> plan -> command (PDDM, MBMF).

:class:`MPCController` has the controller interface (``act(obs) -> command``, ``reset()``)
and adds what a learned controller needs around the planner:

- the model state is built by the checkpoint's :class:`StateLayout` (its manifest names the
  columns; an observation that cannot fill them is refused, never guessed);
- planners work on normalized actions in [-1, 1]^m (``ActionScaler`` maps them to joint
  targets, or to leg speeds for the roach);
- :meth:`swap` replaces the model between two ticks (the node loads it off the control
  thread; the swap itself is one attribute assignment);
- after each plan: the member-mean predicted trajectory (for ``controller/plan``) and an
  uncertainty figure, the ensemble's disagreement on the next state for the executed action
  (std over members in units of each state dimension's std, averaged over dimensions).

Without a model it returns None (the node then publishes nothing and the supervisor holds),
or, given an ``explorer`` (PDDM: the random-walk policy), the explorer's command: the
autonomous loop explores until the learner's first checkpoint arrives, then plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import yaml

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler, check_action_space
from dexmpc_ros.control.planners.cem import CEMConfig, CEMOptions, CEMPlanner
from dexmpc_ros.control.planners.mppi import MPPIConfig, MPPIOptions, MPPIPlanner
from dexmpc_ros.control.planners.base import PlannerConfig, SamplingPlanner
from dexmpc_ros.control.planners.random_shooting import (RandomShootingConfig,
                                                         RandomShootingOptions,
                                                         RandomShootingPlanner)
from dexmpc_ros.control.task_rewards import make_reward, torch_reward
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import POS, StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.learning.torch_threads import torch_threads

#: planner name -> (planner class, its config class). The config class is the planner's
#: options (e.g. :class:`MPPIOptions`) on top of the shared :class:`PlannerConfig`; the
#: options are nested in :class:`MPCConfig` as a field of the planner's name. A new planner:
#: its module, one line here and that field.
PLANNERS: dict[str, tuple[type[SamplingPlanner], type[PlannerConfig]]] = {
    'mppi': (MPPIPlanner, MPPIConfig),
    'cem': (CEMPlanner, CEMConfig),
    'random_shooting': (RandomShootingPlanner, RandomShootingConfig),
}


def pddm_valve_mppi() -> MPPIOptions:
    """The MPC's MPPI defaults: PDDM's dclaw_turn (valve) kappa 0.5, beta 0.7."""
    return MPPIOptions(kappa=0.5, beta=0.7)


@dataclass(frozen=True)
class MPCConfig:
    """
    MPC controller settings (the mpc node's ROS parameters); PDDM defaults (papers.md §7.3).

    The sampling settings every planner shares (horizon, samples, std_penalty, seed) are
    here; each planner's own options are nested under its name (``mppi.kappa``,
    ``cem.iterations``, ...), and only the chosen planner's are used.

    Attributes:
        planner: a name of :data:`PLANNERS`: ``mppi`` (PDDM), ``cem`` or
            ``random_shooting`` (MBMF).
        task: planner reward (``control/task_rewards.py``): valve, baoding, reach, waypoints,
            figure8.
        task_options: YAML mapping of the task's options (Baoding's ``period_steps``,
            figure8's ``size`` and ``period_s``, ...);
            must equal the twin's ``twin_options`` for that task; '' for the defaults.
        horizon: H, planning steps.
        samples: N, action sequences per plan.
        std_penalty: score = mean - std_penalty * std over members (PDDM exploration: 4).
        action_noise: std of Gaussian noise added to each executed action (normalized
            units, then clipped to [-1, 1]); exploration while collecting data, 0 = PDDM.
            The planner's own mean sequence stays noise-free.
        eval_every: every k-th episode (the robot's episode number a multiple of k) runs
            without ``action_noise``: an evaluation episode; 0 = none.
        seed: planner noise seed (-1: nondeterministic).
        threads: torch threads for planning (0: leave torch's setting); 1 suits a busy
            2-core machine.
        action_space: ``absolute`` (PDDM: normalized joint targets) or ``delta`` (change
            from the measured state per step, in units of the supervisor's step bound: no
            planned action is ever clamped); must match the model's training.
        mppi: filtered MPPI's options (PDDM dclaw_turn defaults: kappa 0.5, beta 0.7).
        cem: CEM's options.
        random_shooting: random shooting's options (none).
    """

    planner: str = 'mppi'
    task: str = 'valve'
    task_options: str = ''
    horizon: int = 7
    samples: int = 700
    std_penalty: float = 0.0
    action_noise: float = 0.0
    eval_every: int = 0
    seed: int = 0
    threads: int = 1
    action_space: str = 'absolute'
    mppi: MPPIOptions = field(default_factory=pddm_valve_mppi)
    cem: CEMOptions = field(default_factory=CEMOptions)
    random_shooting: RandomShootingOptions = field(default_factory=RandomShootingOptions)

    def __post_init__(self) -> None:
        check_action_space(self.action_space)
        if self.planner not in PLANNERS:
            raise ValueError(f'planner must be one of {tuple(PLANNERS)}, got {self.planner!r}')
        if not (isinstance(self.threads, int) and self.threads >= 0):
            raise ValueError(f'threads must be an int >= 0, got {self.threads!r}')
        if not math.isfinite(self.std_penalty) or self.std_penalty < 0:
            raise ValueError(f'std_penalty must be finite and >= 0, got {self.std_penalty!r}')
        if not (math.isfinite(self.action_noise) and self.action_noise >= 0):
            raise ValueError(f'action_noise must be finite and >= 0, got {self.action_noise!r}')
        if not (isinstance(self.eval_every, int) and self.eval_every >= 0):
            raise ValueError(f'eval_every must be an int >= 0, got {self.eval_every!r}')
        self.planner_config()  # the planner's config checks horizon, samples and its options

    def planner_config(self) -> PlannerConfig:
        """The chosen planner's config: the shared settings and its nested options."""
        _, config_cls = PLANNERS[self.planner]
        options = getattr(self, self.planner)
        return config_cls(horizon=self.horizon, num_samples=self.samples,
                          std_penalty=self.std_penalty,
                          seed=None if self.seed < 0 else self.seed,
                          **{f.name: getattr(options, f.name) for f in fields(options)})


class MPCController:
    """
    Plans one action per tick with a learned (or ground-truth) model.

    Args:
        spec: the robot.
        config: planner and task settings.
        model: an object with ``ensemble_size``, ``rollout`` and ``predict`` (a
            ``DeltaDynamics``), or None until :meth:`swap`.
        layout: the model's state layout (from its manifest).
        explorer: a controller (``act(obs)``, ``reset()``) used while there is no model.
    """

    def __init__(self, spec: RobotSpec, config: MPCConfig | None = None,
                 model: Any = None, layout: StateLayout | None = None,
                 explorer: Any = None) -> None:
        self.spec = spec
        self.config = config or MPCConfig()
        self.scaler = ActionScaler(spec)
        self.delta = DeltaActionScaler(spec) if self.config.action_space == 'delta' else None
        self.planner = PLANNERS[self.config.planner][0](
            len(spec.command_names), self.config.planner_config())
        self.model = None
        self.layout: StateLayout | None = None
        self._reward = None
        self.last_state: np.ndarray | None = None
        self.last_action: np.ndarray | None = None
        self.uncertainty = float('nan')
        self.explorer = explorer
        self._noise_rng = np.random.default_rng(None if self.config.seed < 0
                                                else self.config.seed + 1)
        self.evaluating = False
        if model is not None:
            self.swap(model, layout)

    def task_reward(self, layout: StateLayout) -> Any:
        """
        The planner's torch reward for ``layout`` (may take a while: call it off the tick).

        Raises:
            ValueError: unknown task, bad ``task_options``, or a layout without the task's
                columns.
        """
        options = self.config.task_options.strip()
        try:
            parsed = yaml.safe_load(options) if options else {}
        except yaml.YAMLError as exc:
            raise ValueError(f'task_options is not YAML: {exc}') from exc
        if not isinstance(parsed, dict):
            raise ValueError(f'task_options must be a YAML mapping, got {options!r}')
        try:
            return torch_reward(make_reward(self.config.task, layout, **parsed))
        except KeyError as exc:  # the layout lacks a column the task reads
            raise ValueError(f'task {self.config.task!r} needs state column {exc}, which the '
                             f'model does not have') from exc

    def swap(self, model: Any, layout: StateLayout | None, reward: Any = None) -> None:
        """
        Use ``model`` (with state ``layout``) from the next :meth:`act` on.

        ``reward`` is :meth:`task_reward` of ``layout`` when the caller built it already
        (the mpc node does, on its loader thread); None builds it here.
        """
        if layout is None:
            raise ValueError('a model needs its state layout')
        if reward is None:
            reward = self.task_reward(layout)
        self.model, self.layout, self._reward = model, layout, reward  # one tick sees all

    def reset(self, episode: int | None = None) -> None:
        """
        New episode: forget the planner's warm start (and the explorer's walk).

        ``episode`` (the robot's episode number) makes it an evaluation episode, without
        ``action_noise``, when it is a multiple of ``eval_every``.
        """
        every = self.config.eval_every
        self.evaluating = bool(every) and episode is not None and episode % every == 0
        self.planner.reset()
        if self.explorer is not None:
            self.explorer.reset()

    def act(self, obs: Observation) -> np.ndarray | None:
        """
        Plan from ``obs``; return the command (m,) or None without a model.

        Raises:
            KeyError: the observation cannot fill the model's state layout (the node
                reports it and publishes nothing).
        """
        model, layout, reward = self.model, self.layout, self._reward
        if model is None:
            return None if self.explorer is None else self.explorer.act(obs)
        state = layout.vector(obs, self.spec.joint_names)
        with torch_threads(self.config.threads):
            action = self.planner.plan(torch.from_numpy(state).float(), model, reward)
            self.uncertainty = self._disagreement(model, state, action)
        if self.config.action_noise > 0 and not self.evaluating:
            action = np.clip(action + self._noise_rng.normal(
                0.0, self.config.action_noise, action.shape), -1.0, 1.0)
        self.last_state, self.last_action = state, action
        if self.delta is not None:
            measured = obs.position if self.spec.command_interface == 'position' \
                else obs.velocity
            return self.delta.to_command(action, measured[self.spec.actuated_index])
        return self.scaler.to_command(action)

    @property
    def exploring(self) -> bool:
        """True while the explorer acts (no model yet)."""
        return self.model is None and self.explorer is not None

    @property
    def info(self) -> dict[str, Any]:
        """The planner's ``last_info`` plus ``uncertainty``."""
        return {**self.planner.last_info, 'uncertainty': self.uncertainty}

    def predicted_joint_positions(self) -> tuple[list[str], np.ndarray]:
        """Joint names and (H, k) member-mean predicted positions of the last plan."""
        trajectory = self.planner.last_info.get('trajectory')
        if trajectory is None or self.layout is None:
            return [], np.empty((0, 0))
        names = [n for n in self.layout.names if n.startswith(POS)]
        columns = self.layout.columns(names)
        return [n[len(POS):] for n in names], np.asarray(trajectory)[:, columns]

    @staticmethod
    def _disagreement(model: Any, state: np.ndarray, action: np.ndarray) -> float:
        """Std over members of the predicted next state, in state-std units, mean over dims."""
        if getattr(model, 'ensemble_size', 1) < 2 or not hasattr(model, 'predict'):
            return float('nan')
        predicted = np.asarray(model.predict(state[None], action[None]))[:, 0]  # (E, nx)
        scale = np.asarray(getattr(model.state_norm, 'std', 1.0), dtype=np.float64)
        return float(np.mean(predicted.std(axis=0) / scale))
