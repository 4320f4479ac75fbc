"""
A distilled (or fine-tuned) :class:`MLPPolicy` as a controller: observation -> command.

The controller node runs it like any other controller (``policy: mlp_policy``,
``mlp_policy.checkpoint: <dir>``). At construction the checkpoint is loaded and verified
(:func:`load_policy`: robot and action names must be this robot's, the file intact); its
manifest's ``state_names`` define the policy input, built from each observation by a
:class:`StateLayout` (an observation that cannot fill it raises KeyError, never a guess).
The policy's mean action in ``[-1, 1]^m`` becomes a command through
:class:`ActionScaler` (``absolute``: normalized joint targets / leg speeds) or
:class:`DeltaActionScaler` (``delta``: a change from the measured joint state within the
supervisor's step bound); the checkpoint's ``extra.action_space`` (``absolute`` when
absent) must match the configured one. The policy is stateless: ``reset`` does nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dexmpc_ros.core.action_space import ActionScaler, DeltaActionScaler, check_action_space
from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.core.state_layout import StateLayout
from dexmpc_ros.core.types import Observation


@dataclass(frozen=True)
class MLPPolicyConfig:
    """
    Policy controller settings (the controller node's ``mlp_policy.*`` parameters).

    Attributes:
        checkpoint: policy checkpoint directory (``models/policy.save_policy``); required.
        action_space: ``absolute`` or ``delta``; must match the checkpoint's training.
        threads: torch threads for the forward pass (0: leave torch's setting).
    """

    checkpoint: str = ''
    action_space: str = 'absolute'
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ValueError('mlp_policy needs a checkpoint (a policy checkpoint directory)')
        check_action_space(self.action_space)
        if not (isinstance(self.threads, int) and self.threads >= 0):
            raise ValueError(f'threads must be an int >= 0, got {self.threads!r}')


class MLPPolicyController:
    """
    ``act(obs) -> command (m,)`` with a learned policy; ``reset()`` is a no-op.

    Raises:
        CheckpointError: (at construction) the checkpoint is missing, corrupt, for another
            robot or action set, or trained for the other action space.
    """

    def __init__(self, spec: RobotSpec, config: MLPPolicyConfig) -> None:
        from dexmpc_ros.learning.policies.mlp import load_policy  # torch: only when one is used

        self.spec, self.config = spec, config
        self.policy, self.manifest = load_policy(
            config.checkpoint, expect_robot=spec.name, expect_action_names=spec.command_names)
        trained = self.manifest.get('extra', {}).get('action_space', 'absolute')
        if trained != config.action_space:
            raise CheckpointError(f'{config.checkpoint}: trained with {trained} actions, '
                                  f'this controller is set to {config.action_space}')
        # The node's thread budget, not the one the policy was trained with.
        self.policy.config = dataclasses.replace(self.policy.config, threads=config.threads)
        self.layout = StateLayout(tuple(self.manifest['state_names']))
        self.scaler = ActionScaler(spec)
        self.delta = DeltaActionScaler(spec) if config.action_space == 'delta' else None
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        """Nothing to forget: the policy has no memory."""

    def act(self, obs: Observation) -> np.ndarray:
        """
        The command (m,) for ``obs``.

        Raises:
            KeyError: the observation lacks a column of the policy's input.
        """
        state = self.layout.vector(obs, self.spec.joint_names)
        action = self.policy.act(state)
        self.last_action = action
        if self.delta is not None:
            measured = obs.position if self.spec.command_interface == 'position' \
                else obs.velocity
            return self.delta.to_command(action, measured[self.spec.actuated_index])
        return self.scaler.to_command(action)
