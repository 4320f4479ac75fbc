"""
Name -> controller factory, for the controller node and the experiment specs.

Each entry builds ``(spec, params: dict) -> controller`` where params are the node's
controller parameters; unknown parameter names raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from dexmpc_ros.control.mlp_policy import MLPPolicyConfig, MLPPolicyController
from dexmpc_ros.control.random_walk import RandomWalkConfig, RandomWalkController
from dexmpc_ros.control.scripted import ScriptedConfig, ScriptedController
from dexmpc_ros.core.robot_spec import RobotSpec

#: name -> (controller class, its config dataclass)
CONTROLLERS: dict[str, tuple[Callable[..., Any], type]] = {
    'scripted': (ScriptedController, ScriptedConfig),
    'random_walk': (RandomWalkController, RandomWalkConfig),
    'mlp_policy': (MLPPolicyController, MLPPolicyConfig),
}


def config_fields(name: str) -> dict[str, Any]:
    """Field name -> default value of controller ``name``'s config."""
    _, config_cls = _lookup(name)
    return {f.name: f.default for f in dataclasses.fields(config_cls)}


def make_controller(name: str, spec: RobotSpec, params: dict[str, Any]) -> Any:
    """Build controller ``name`` with config values from ``params`` (missing = default)."""
    cls, config_cls = _lookup(name)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f'controller {name!r} has no parameters {sorted(unknown)}; '
                         f'known: {sorted(known)}')
    return cls(spec, config_cls(**params))


def _lookup(name: str) -> tuple[Callable[..., Any], type]:
    if name not in CONTROLLERS:
        raise ValueError(f'unknown controller {name!r}; available: {", ".join(CONTROLLERS)}')
    return CONTROLLERS[name]
