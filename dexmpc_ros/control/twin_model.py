"""
The twin itself as the planner's model: ground-truth rollouts for sanity checks.

PDDM's advice (papers.md §7.6): before blaming a learned model, check that the planner
solves the task with the true dynamics. :class:`TwinModel` has the planners' rollout
interface, ``rollout(state (nx,), actions (N, H, nu)) -> (1, N, H, nx)``, and computes it by
restoring a snapshot of a MuJoCo twin and stepping it once per action, N times.
It is slow (one physics step per sample per horizon step: N=64, H=7 on the hand valve
takes ~0.5 s), so it is for tests and benchmarks, not for the robot.

Commands go through the same per-step limits the safety supervisor applies (step, then
velocity * dt, then the position box, relative to the state reached so far), so the
plan sees what the robot would actually be sent.
"""

from __future__ import annotations

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation
from dexmpc_ros.robots.mujoco_twin import MujocoTwin


class TwinModel:
    """
    Ground-truth rollouts on a MuJoCo twin.

    Args:
        twin: the twin to plan on (its current state is what :meth:`capture` saves).
        spec: its robot spec.
        layout: state columns (the planner reward reads them).
        supervised: apply the supervisor's step/velocity/box clamps to each command.
        action_space: ``absolute`` or ``delta`` (see core/action_space.py).
    """

    ensemble_size = 1

    def __init__(self, twin: MujocoTwin, spec: RobotSpec, layout: StateLayout,
                 supervised: bool = True, action_space: str = 'absolute') -> None:
        self.twin, self.spec, self.layout = twin, spec, layout
        self.scaler = ActionScaler(spec)
        self.steps = DeltaActionScaler(spec)  # the supervisor's per-step bounds
        self.delta_actions = action_space == 'delta'
        self.supervised = supervised
        self._snapshot = None

    def capture(self) -> np.ndarray:
        """Snapshot the twin's current state; return its state vector (nx,)."""
        self._snapshot = self.twin.snapshot()
        return self.state()

    def state(self) -> np.ndarray:
        """The twin's current state vector (nx,)."""
        joints = self.twin.joints()
        names, values = self.twin.task_state()
        obs = Observation(0, joints.position, joints.velocity, tuple(names), values)
        return self.layout.vector(obs, self.spec.joint_names)

    def command(self, action: np.ndarray) -> np.ndarray:
        """The command the robot would be sent for a normalized action (m,) now."""
        joints = self.twin.joints()
        position = self.spec.command_interface == 'position'
        measured = (joints.position if position else joints.velocity)[self.spec.actuated_index]
        if self.delta_actions:
            return self.steps.to_command(action, measured)
        command = self.scaler.to_command(action)
        if self.supervised and position:  # the supervisor's step, velocity and box clamps
            command = self.steps.to_command(self.steps.to_action(command, measured), measured)
        return command

    def rollout(self, state, actions):
        """
        Predicted states s_1..s_H for each action sequence, by simulation.

        Args:
            state: (nx,) the current state (must be the captured one; only checked in
                shape).
            actions: (N, H, nu) torch tensor of normalized actions.

        Returns:
            (1, N, H, nx) float32 torch tensor.
        """
        import torch

        if self._snapshot is None:
            raise RuntimeError('TwinModel.rollout before capture()')
        acts = actions.detach().cpu().numpy().astype(np.float64)
        n, h, _ = acts.shape
        out = np.empty((1, n, h, self.layout.dim), dtype=np.float32)
        try:
            for i in range(n):
                self.twin.restore(self._snapshot)
                for k in range(h):
                    self.twin.apply_command(self.command(acts[i, k]))
                    self.twin.step()
                    out[0, i, k] = self.state()
        finally:
            self.twin.restore(self._snapshot)
        return torch.from_numpy(out)
