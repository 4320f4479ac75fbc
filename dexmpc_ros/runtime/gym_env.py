"""
A gymnasium MuJoCo environment as a :class:`~dexmpc_ros.runtime.sim_loop.StepEnv` (MBMF).

:class:`GymEnv` wraps e.g. ``HalfCheetah-v5`` for the in-process model-based loop
(papers.md §1.5, target T1-MBMF). Learning code sees normalized actions ``a`` in
``[-1, 1]^m``; the env receives ``low + (clip(a) + 1) / 2 · (high - low)`` in its own action
box (for the cheetah the box is ``[-1, 1]^6``, so the map is the identity).

- ``step`` returns ``done`` only for a true termination of the MDP (gymnasium's
  ``terminated``); time limits are the caller's episode length (``LoopConfig.episode_steps``,
  PPO's ``episode_steps``), so a learner can bootstrap at a cut instead of mistaking it for
  a terminal state. Gymnasium's own ``TimeLimit`` flag is ignored.
- ``explore`` is uniform random in ``[-1, 1]^m``; ``success`` is always False (locomotion
  has no success criterion).
- The state is the env's observation (float64). With
  ``exclude_current_positions_from_observation=False`` a MuJoCo locomotion observation is
  ``qpos`` then ``qvel``; :attr:`GymEnv.state_names` names those columns
  ``pos/<joint>``, ``vel/<joint>`` (:class:`StateLayout` convention; a free or
  multi-DoF joint gets one name per coordinate, ``<joint>:<k>``), or ``task/obs_<i>`` when
  the observation is not that layout.

:func:`forward_reward` is the planner's torch reward for forward locomotion from the
predicted states: ``forward_weight · Δx / dt - ctrl_cost_weight · ‖a_env‖²``, where Δx is
the change of the x-position column from the previous (predicted) state, exactly
HalfCheetah-v5's ``reward_forward + reward_ctrl`` (papers.md §1.5 uses ``Δx/dt - 0.1‖a‖²``).

gymnasium and mujoco are imported when a :class:`GymEnv` is built, not at module import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from dexmpc_ros.control.planners.base import RewardFn
from dexmpc_ros.core.state_layout import POS, TASK, VEL

#: The cheetah's own reward weights (gymnasium HalfCheetah-v5 defaults).
CHEETAH_FORWARD_WEIGHT = 1.0
CHEETAH_CTRL_COST = 0.1


class GymEnv:
    """
    A gymnasium environment behind :class:`StepEnv` (normalized actions, float64 states).

    Args:
        env_id: gymnasium id, e.g. ``HalfCheetah-v5``.
        **kwargs: passed to ``gymnasium.make``; for MuJoCo locomotion envs
            ``exclude_current_positions_from_observation`` defaults to False here (the
            planner reward needs x).

    Attributes:
        env: the gymnasium env (its checker wrapper disabled).
        action_dim: m.
        state_dim: nx.
        low, high: (m,) the env's action box.
        dt: seconds per :meth:`step` (the env's ``dt``).
        state_names: one ``pos/``, ``vel/`` or ``task/`` name per state column.
        action_names: one name per action (MuJoCo actuator names when available).
    """

    def __init__(self, env_id: str = 'HalfCheetah-v5', **kwargs: Any) -> None:
        import gymnasium

        if env_id.split('-')[0] in _LOCOMOTION_WITH_X:
            kwargs.setdefault('exclude_current_positions_from_observation', False)
        self.env_id = env_id
        self.env = gymnasium.make(env_id, disable_env_checker=True, **kwargs)
        box = self.env.action_space
        self.low = np.asarray(box.low, dtype=np.float64)
        self.high = np.asarray(box.high, dtype=np.float64)
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f'{env_id}: the action box must be finite to normalize actions')
        self.action_dim = int(self.low.shape[0])
        self.state_dim = int(np.prod(self.env.observation_space.shape))
        self.dt = float(self.env.unwrapped.dt)
        self.state_names, self.action_names = _names(self.env.unwrapped, self.state_dim,
                                                     self.action_dim)
        self.last_info: dict[str, Any] = {}

    def to_env_action(self, action: np.ndarray) -> np.ndarray:
        """(..., m) normalized action, clipped to [-1, 1] -> (..., m) env action in the box."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode (the env's reset noise seeded with ``seed``); return the state."""
        obs, self.last_info = self.env.reset(seed=int(seed))
        return np.asarray(obs, dtype=np.float64).reshape(-1)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Apply ``action`` (m,) in [-1, 1]: (next state, reward, terminated)."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f'action must be ({self.action_dim},), got {action.shape}')
        obs, reward, terminated, _, self.last_info = self.env.step(
            self.to_env_action(action).astype(self.env.action_space.dtype))
        return np.asarray(obs, dtype=np.float64).reshape(-1), float(reward), bool(terminated)

    def explore(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform random action in [-1, 1]^m."""
        return rng.uniform(-1.0, 1.0, self.action_dim)

    def success(self) -> bool:
        """Locomotion has no success criterion."""
        return False

    def close(self) -> None:
        """Release the simulator."""
        self.env.close()

    def x_column(self) -> int:
        """Column of the root's x position (``pos/rootx``); ValueError if absent."""
        name = POS + 'rootx'
        if name not in self.state_names:
            raise ValueError(f'{self.env_id}: no {name} column; build the env with '
                             f'exclude_current_positions_from_observation=False')
        return self.state_names.index(name)

    def planner_reward(self, forward_weight: float = CHEETAH_FORWARD_WEIGHT,
                       ctrl_cost_weight: float = CHEETAH_CTRL_COST) -> RewardFn:
        """:func:`forward_reward` for this env's x column, dt and action box."""
        return forward_reward(self.x_column(), self.dt, forward_weight, ctrl_cost_weight,
                              self.low, self.high)


#: Families whose observation can include the root position (gymnasium MuJoCo v5).
_LOCOMOTION_WITH_X = ('HalfCheetah', 'Hopper', 'Walker2d', 'Swimmer', 'Ant', 'Humanoid',
                      'HumanoidStandup')


def _names(env: Any, nx: int, nu: int) -> tuple[list[str], list[str]]:
    """State names (qpos/qvel per joint when the observation is exactly that) and actions."""
    actions = [f'a{i}' for i in range(nu)]
    model = getattr(env, 'model', None)
    if model is None:
        return [f'{TASK}obs_{i}' for i in range(nx)], actions
    import mujoco

    def name(kind: Any, i: int, prefix: str) -> str:
        return mujoco.mj_id2name(model, kind, i) or f'{prefix}{i}'

    if model.nu == nu:
        actions = [name(mujoco.mjtObj.mjOBJ_ACTUATOR, i, 'actuator') for i in range(nu)]
    if model.nq + model.nv != nx:
        return [f'{TASK}obs_{i}' for i in range(nx)], actions
    pos, vel = [], []
    for j in range(model.njnt):
        joint = name(mujoco.mjtObj.mjOBJ_JOINT, j, 'joint')
        nq = (model.jnt_qposadr[j + 1] if j + 1 < model.njnt else model.nq) \
            - model.jnt_qposadr[j]
        nv = (model.jnt_dofadr[j + 1] if j + 1 < model.njnt else model.nv) \
            - model.jnt_dofadr[j]
        pos += [POS + joint] if nq == 1 else [f'{POS}{joint}:{k}' for k in range(nq)]
        vel += [VEL + joint] if nv == 1 else [f'{VEL}{joint}:{k}' for k in range(nv)]
    return pos + vel, actions


def forward_reward(x_column: int, dt: float, forward_weight: float = CHEETAH_FORWARD_WEIGHT,
                   ctrl_cost_weight: float = CHEETAH_CTRL_COST,
                   low: np.ndarray | None = None, high: np.ndarray | None = None) -> RewardFn:
    """
    Planner reward of forward locomotion: ``w·Δx/dt - c·‖a_env‖²`` per predicted step.

    Args:
        x_column: state column of the root's x position.
        dt: seconds per step.
        forward_weight: w (HalfCheetah-v5: 1).
        ctrl_cost_weight: c (HalfCheetah-v5: 0.1).
        low, high: (m,) the env's action box; None: the box is [-1, 1]^m. Actions are
            clipped to [-1, 1] and mapped into it, as :meth:`GymEnv.step` does.

    Returns:
        ``fn(states (E, N, H, nx), actions (N, H, m), state0 (nx,)) -> (rewards (E, N, H),
        dones (E, N, H) all False)``; rewards in the states' dtype.
    """
    if not dt > 0:
        raise ValueError(f'dt must be > 0, got {dt}')
    box = None if low is None else (np.asarray(low, dtype=np.float64),
                                    np.asarray(high, dtype=np.float64))

    def fn(states: Tensor, actions: Tensor, state0: Tensor) -> tuple[Tensor, Tensor]:
        x = states[..., x_column]                                   # (E, N, H)
        x0 = state0[x_column].to(x.dtype)
        previous = torch.cat([x0.expand(*x.shape[:-1], 1), x[..., :-1]], dim=-1)
        a = actions.to(x.dtype).clamp(-1.0, 1.0)
        if box is not None:
            lo = torch.as_tensor(box[0], dtype=x.dtype)
            hi = torch.as_tensor(box[1], dtype=x.dtype)
            a = lo + (a + 1.0) * 0.5 * (hi - lo)
        ctrl = a.square().sum(dim=-1)                               # (N, H) or (E, N, H)
        rewards = forward_weight * (x - previous) / dt - ctrl_cost_weight * ctrl
        return rewards, torch.zeros(rewards.shape, dtype=torch.bool)

    return fn
