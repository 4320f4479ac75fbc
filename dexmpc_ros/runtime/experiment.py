"""
Experiment specs: ``config/experiments/<name>.yaml`` -> node descriptions.

One function, :func:`node_descriptions`, turns a spec into the list of nodes to start;
both ``dexmpc up`` (processes) and ``launch/experiment.launch.py`` (``ros2 launch``)
call it, so the two cannot drift.

YAML layout::

    description: one line shown by `dexmpc list`
    robot: hand24                  # config/robots/<robot>.yaml
    backend: sim                   # sim (MuJoCo twin) | hardware (driver) | hil
    duration_s: 30                 # default run length; `--duration` overrides
    use_sim_time: false            # true: the twin publishes /clock, everyone follows it
    nodes:
      robot:      {kind: robot, parameters: {task: valve}}   # twin or driver per backend
      safety:     {kind: safety}
      controller: {kind: controller, parameters: {policy: random_walk}}
      recorder:   {kind: recorder}

Every node gets the parameters ``robot`` and ``use_sim_time``. With ``backend: hardware``
``kind: robot`` is ``driver_node`` (widowx, roach: ``driver`` = the robot, ``driver_options``
= its YAML ``driver:`` section) or ``hand_driver_node`` (hand24: its ``controller``).

``backend: hil`` (hardware in the loop, widowx and roach) runs the hardware path against
an emulated robot: ``kind: robot`` is ``driver_node`` as on hardware, and the spec must
have one ``kind: hil_world`` node (``hil_world_node``: the twin behind the robot's
wire-protocol emulator). Both get the same port, ``<run>/dev/<name of the robot YAML's
port>`` (a temporary folder without a run folder); the driver waits up to
:data:`HIL_CONNECT_WAIT_S` for the world to create it.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dexmpc_ros.core.errors import ConfigError, UnknownExperimentError
from dexmpc_ros.core.robot_spec import available_robots, config_dir, load_robot_spec
from dexmpc_ros.core.yaml_io import check_type, load_yaml_mapping, optional, require
from dexmpc_ros.robots.registry import robot_node_kinds

BACKENDS = ('sim', 'hardware', 'hil')
#: how long a hil driver waits for the world node's port [s] (both start together)
HIL_CONNECT_WAIT_S = 30.0


@dataclass(frozen=True)
class NodeKind:
    """Where a node kind's code lives: ``python -m module`` == console script ``executable``."""

    module: str
    executable: str


#: node kind -> code. ``robot`` is resolved per backend by :func:`resolve_kind`.
NODE_KINDS: dict[str, NodeKind] = {
    'twin': NodeKind('dexmpc_ros.ros.twin_node', 'twin_node'),
    'safety': NodeKind('dexmpc_ros.ros.safety_node', 'safety_node'),
    'controller': NodeKind('dexmpc_ros.ros.controller_node', 'controller_node'),
    'recorder': NodeKind('dexmpc_ros.ros.recorder_node', 'recorder_node'),
    'fuzz': NodeKind('dexmpc_ros.ros.fuzz_node', 'fuzz_node'),
    'mpc': NodeKind('dexmpc_ros.ros.mpc_node', 'mpc_node'),
    'learner': NodeKind('dexmpc_ros.ros.learner_node', 'learner_node'),
    'driver': NodeKind('dexmpc_ros.ros.driver_node', 'driver_node'),
    'hand_driver': NodeKind('dexmpc_ros.ros.hand_driver_node', 'hand_driver_node'),
    'camera': NodeKind('dexmpc_ros.ros.camera_node', 'camera_node'),
    'hil_world': NodeKind('dexmpc_ros.ros.hil_world_node', 'hil_world_node'),
}
#: backend -> robot -> node kind that moves the robot.
ROBOT_NODES: dict[str, dict[str, str]] = robot_node_kinds()


@dataclass(frozen=True)
class NodeSpec:
    """One node of an experiment, as written in YAML (after overrides)."""

    name: str
    kind: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A parsed, validated experiment spec."""

    name: str
    description: str
    robot: str
    backend: str
    duration_s: float
    use_sim_time: bool
    nodes: tuple[NodeSpec, ...]
    source: str = ''

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as plain data (written to ``<run>/spec.yaml``)."""
        return {
            'name': self.name, 'description': self.description, 'robot': self.robot,
            'backend': self.backend, 'duration_s': self.duration_s,
            'use_sim_time': self.use_sim_time, 'source': self.source,
            'nodes': {n.name: {'kind': n.kind, 'parameters': dict(n.parameters)}
                      for n in self.nodes},
        }


@dataclass(frozen=True)
class NodeDescription:
    """Everything needed to start one node, as a process or a launch_ros Node."""

    name: str
    kind: str
    module: str
    executable: str
    parameters: dict[str, Any]


def experiments_dir() -> Path:
    """``config/experiments`` of the package."""
    return config_dir() / 'experiments'


def available_experiments() -> list[str]:
    """Experiment names, sorted."""
    return sorted(p.stem for p in experiments_dir().glob('*.yaml'))


def describe_experiments() -> list[tuple[str, str]]:
    """(name, one-line description) for every experiment; broken files say so."""
    rows = []
    for name in available_experiments():
        try:
            rows.append((name, load_experiment(name).description))
        except ConfigError as exc:
            rows.append((name, f'[invalid: {exc}]'))
    return rows


def load_experiment(name_or_path: str | Path,
                    overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
    """
    Load an experiment by name or YAML path and apply ``node.param=value`` overrides.

    Raises:
        UnknownExperimentError: no such experiment (the message lists the available ones).
        ConfigError: malformed YAML or override (the message names the file and key).
    """
    path = Path(name_or_path)
    if path.suffix not in ('.yaml', '.yml'):
        path = experiments_dir() / f'{name_or_path}.yaml'
        if not path.is_file():
            raise UnknownExperimentError(
                f'unknown experiment {str(name_or_path)!r}; available: '
                f'{", ".join(available_experiments()) or "(none)"}')
    data = load_yaml_mapping(path)
    data = apply_overrides(data, overrides, str(path))
    return parse_experiment(data, path.stem, str(path))


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...],
                    source: str) -> dict[str, Any]:
    """
    Apply ``--set`` overrides: ``node.param=value`` (value parsed as YAML).

    ``node`` must exist in the spec; ``param`` may be new. ``duration_s=...`` and other
    top-level keys are accepted without a dot.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'--set {item!r}: expected node.param=value')
        key, raw = item.split('=', 1)
        try:
            value = yaml.safe_load(raw) if raw else ''
        except yaml.YAMLError as exc:
            raise ConfigError(f'--set {item!r}: value is not valid YAML ({exc})') from exc
        if '.' not in key:
            data[key] = value
            continue
        node, param = key.split('.', 1)
        nodes = data.get('nodes')
        if not isinstance(nodes, dict) or node not in nodes:
            known = ', '.join(nodes) if isinstance(nodes, dict) else '(none)'
            raise ConfigError(f'--set {item!r}: {source} has no node {node!r}; nodes: {known}')
        entry = nodes[node] if isinstance(nodes[node], dict) else {}
        entry.setdefault('parameters', {})
        if not isinstance(entry['parameters'], dict):
            raise ConfigError(f'{source}: nodes.{node}.parameters must be a mapping')
        entry['parameters'][param] = value
        nodes[node] = entry
    return data


def parse_experiment(data: dict[str, Any], name: str, source: str) -> Experiment:
    """Validate parsed YAML into an :class:`Experiment`; errors name ``source`` and key."""
    where = f'{source}: '
    known = {'description', 'robot', 'backend', 'duration_s', 'use_sim_time', 'nodes'}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f'{source}: unknown top-level keys {sorted(unknown)}; '
                          f'allowed: {sorted(known)}')
    robot = require(data, 'robot', str, where)
    if robot not in available_robots():
        raise ConfigError(f'{source}: robot: unknown robot {robot!r}; available: '
                          f'{", ".join(available_robots())}')
    backend = optional(data, 'backend', str, where, 'sim')
    if backend not in BACKENDS:
        raise ConfigError(f'{source}: backend: must be one of {BACKENDS}, got {backend!r}')
    duration = optional(data, 'duration_s', float, where, 30.0)
    if not duration > 0:
        raise ConfigError(f'{source}: duration_s: must be > 0, got {duration}')
    nodes_raw = require(data, 'nodes', dict, where)
    nodes = []
    for node_name, entry in nodes_raw.items():
        nwhere = f'{source}: nodes.{node_name}'
        if entry is None:
            entry = {}
        check_type(entry, dict, nwhere)
        extra = set(entry) - {'kind', 'parameters'}
        if extra:
            raise ConfigError(f'{nwhere}: unknown keys {sorted(extra)}; allowed: kind, parameters')
        kind = require(entry, 'kind', str, nwhere)
        if kind not in NODE_KINDS and kind != 'robot':
            raise ConfigError(f'{nwhere}.kind: unknown node kind {kind!r}; available: robot, '
                              f'{", ".join(NODE_KINDS)}')
        params = optional(entry, 'parameters', dict, nwhere, {})
        params = {key: _check_param(value, f'{nwhere}.parameters.{key}')
                  for key, value in params.items()}
        nodes.append(NodeSpec(str(node_name), kind, params))
    if not any(n.kind == 'robot' for n in nodes):
        raise ConfigError(f'{source}: nodes: no node of kind "robot" (the twin or driver)')
    worlds = sum(n.kind == 'hil_world' for n in nodes)
    if (backend == 'hil') != (worlds == 1):
        raise ConfigError(f'{source}: nodes: backend hil needs exactly one node of kind '
                          f'"hil_world" and other backends none; got {worlds} with backend '
                          f'{backend!r}')
    return Experiment(
        name=name, description=optional(data, 'description', str, where, ''),
        robot=robot, backend=backend, duration_s=duration,
        use_sim_time=optional(data, 'use_sim_time', bool, where, False),
        nodes=tuple(nodes), source=source)


def _check_param(value: Any, where: str) -> Any:
    """
    Check that ``value`` can be a ROS parameter and return it normalized.

    ROS parameters are scalars or non-empty lists of one scalar type; a list mixing
    ints and floats becomes a float list (rcl would reject it).
    """
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and value:
        kinds = {_scalar_kind(v) for v in value}
        if kinds <= {'int', 'float'} and 'float' in kinds:
            return [float(v) for v in value]
        if len(kinds) == 1 and None not in kinds:
            return value
    raise ConfigError(f'{where}: a ROS parameter must be a scalar or a non-empty list of one '
                      f'scalar type, got {value!r}')


def _scalar_kind(value: Any) -> str | None:
    for kind in (bool, int, float, str):  # bool first: it is a subclass of int
        if isinstance(value, kind):
            return kind.__name__
    return None


def resolve_kind(experiment: Experiment, node: NodeSpec) -> str:
    """The concrete node kind (``robot`` becomes the twin or the robot's driver)."""
    if node.kind != 'robot':
        return node.kind
    kind = ROBOT_NODES[experiment.backend].get(experiment.robot)
    if kind is None:
        raise ConfigError(f'{experiment.source}: backend {experiment.backend!r} has no driver '
                          f'for robot {experiment.robot!r} yet')
    return kind


def node_descriptions(experiment: Experiment, run_dir: str | Path | None = None
                      ) -> list[NodeDescription]:
    """
    Turn an experiment into the nodes to start (same list for `dexmpc up` and launch).

    Args:
        experiment: the parsed spec.
        run_dir: the run folder; the recorder writes ``<run_dir>/bag``, the learner reads
            it and keeps its checkpoints in ``<run_dir>/models``. None leaves those
            parameters as given in the spec (launch users pass them).
    """
    descriptions = []
    port = _hil_port(experiment.robot, run_dir) if experiment.backend == 'hil' else None
    for node in experiment.nodes:
        kind = resolve_kind(experiment, node)
        params = {'robot': experiment.robot, 'use_sim_time': experiment.use_sim_time}
        if kind == 'twin':
            # The twin is the clock: it publishes /clock instead of following it.
            params['use_sim_time'] = False
            params['publish_clock'] = experiment.use_sim_time
        if kind in ('driver', 'hand_driver'):
            params.update(_driver_params(experiment.robot, kind, port))
        if kind == 'hil_world':
            params['port'] = port
        if kind == 'recorder' and run_dir is not None:
            params['output_dir'] = str(Path(run_dir) / 'bag')
        if kind == 'learner' and run_dir is not None:
            params['bag_dir'] = str(Path(run_dir) / 'bag')
            params['store_dir'] = str(Path(run_dir) / 'models')
        params.update(node.parameters)
        code = NODE_KINDS[kind]
        descriptions.append(NodeDescription(node.name, kind, code.module, code.executable,
                                            params))
    return descriptions


def _driver_params(robot: str, kind: str, port: str | None = None) -> dict[str, Any]:
    """A hardware node's parameters from the robot YAML's ``driver:`` section.

    ``port`` (backend hil): the emulated port replaces the YAML's, and the driver waits
    for it to appear.
    """
    driver = dict(load_robot_spec(robot).driver)
    if kind == 'hand_driver':
        return {'controller': driver['controller']} if 'controller' in driver else {}
    extra: dict[str, Any] = {}
    if port is not None:
        driver['port'] = port
        extra['connect_wait_s'] = HIL_CONNECT_WAIT_S
    # the whole section; the driver registry maps it onto the driver's config
    return {'driver': robot, 'driver_options': yaml.safe_dump(
        driver, default_flow_style=True, width=1_000_000).strip(), **extra}


def _hil_port(robot: str, run_dir: str | Path | None) -> str:
    """The emulated port of a hil run: ``<run_dir>/dev/<name of the robot's port>``."""
    name = Path(str(load_robot_spec(robot).driver.get('port', 'ttyEMU0'))).name
    root = Path(run_dir).absolute() if run_dir is not None else \
        Path(tempfile.gettempdir()) / f'dexmpc-hil-{robot}'
    return str(root / 'dev' / name)


def ros_params_file(descriptions: list[NodeDescription]) -> dict[str, Any]:
    """The ``<node>: ros__parameters: {...}`` mapping for a ``--params-file``."""
    return {f'/{d.name}': {'ros__parameters': dict(d.parameters)} for d in descriptions}
