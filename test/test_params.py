"""ROS parameters declared from config dataclasses (ros/params.py), in process."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

rclpy = pytest.importorskip('rclpy')

from rclpy.parameter import Parameter  # noqa: E402

from dexmpc_ros.core.errors import ConfigError  # noqa: E402
from dexmpc_ros.ros.params import config_from_node, field_docs  # noqa: E402


@dataclass(frozen=True)
class DemoConfig:
    """
    Demo.

    Attributes:
        gain: proportional gain [1/s],
            continued on a second line.
        seed: RNG seed; None draws fresh entropy.
        name: a label.
    """

    gain: float = 1.5
    seed: int | None = None
    name: str = 'x'

    def __post_init__(self) -> None:
        if self.gain < 0:
            raise ValueError(f'gain must be >= 0, got {self.gain}')


@dataclass(frozen=True)
class OuterConfig:
    """
    A config nesting another one, as MPCConfig nests its planners' settings.

    Attributes:
        mode: a label.
        inner: the nested settings (its own defaults overridden here).
    """

    mode: str = 'a'
    inner: DemoConfig = field(default_factory=lambda: DemoConfig(gain=3.0))


@pytest.fixture
def context(ros_domain):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain)
    yield ctx
    rclpy.try_shutdown(context=ctx)


def make_node(context, overrides=()):
    return rclpy.create_node('demo', context=context, parameter_overrides=list(overrides))


def test_field_docs_reads_attributes_section():
    docs = field_docs(DemoConfig)
    assert docs['gain'] == 'proportional gain [1/s], continued on a second line.'
    assert docs['name'] == 'a label.'


def test_defaults_declared_with_descriptions(context):
    node = make_node(context)
    cfg = config_from_node(node, DemoConfig, prefix='demo.')
    assert cfg == DemoConfig()
    descriptor = node.describe_parameter('demo.gain')
    assert descriptor.description.startswith('proportional gain')
    node.destroy_node()


def test_overrides_and_none_seed(context):
    node = make_node(context, [Parameter('demo.gain', value=2), Parameter('demo.seed', value=4)])
    cfg = config_from_node(node, DemoConfig, prefix='demo.')
    assert cfg.gain == 2.0 and isinstance(cfg.gain, float)
    assert cfg.seed == 4
    node.destroy_node()


def test_invalid_value_names_node(context):
    node = make_node(context, [Parameter('demo.gain', value=-1.0)])
    with pytest.raises(ConfigError, match='demo'):
        config_from_node(node, DemoConfig, prefix='demo.')
    node.destroy_node()


def test_wrong_type_names_parameter(context):
    node = make_node(context, [Parameter('demo.gain', value='fast')])
    with pytest.raises(ConfigError, match='demo.gain must be float'):
        config_from_node(node, DemoConfig, prefix='demo.')
    node.destroy_node()


def test_nested_configs_are_dotted_parameters_with_the_outer_defaults(context):
    node = make_node(context, [Parameter('outer.inner.seed', value=7)])
    cfg = config_from_node(node, OuterConfig, prefix='outer.')
    assert cfg == OuterConfig(inner=DemoConfig(gain=3.0, seed=7))
    assert node.get_parameter('outer.inner.gain').value == 3.0
    assert node.describe_parameter('outer.inner.gain').description.startswith('proportional')
    assert not node.has_parameter('outer.inner')
    node.destroy_node()


def test_invalid_nested_value_names_the_nested_parameter(context):
    node = make_node(context, [Parameter('outer.inner.gain', value=-2.0)])
    with pytest.raises(ConfigError, match=r'parameter outer\.inner\.\*: gain must be >= 0'):
        config_from_node(node, OuterConfig, prefix='outer.')
    node.destroy_node()


def test_mpc_and_learner_configs_nest_as_dotted_parameters(context):
    """The planner's options and the learner's model are ``mppi.*`` / ``train.model.*``."""
    from dexmpc_ros.control.mpc import MPCConfig
    from dexmpc_ros.learning.dynamics.config import DynamicsConfig
    from dexmpc_ros.learning.dynamics.training import TrainConfig

    node = make_node(context, [Parameter('mppi.kappa', value=5), Parameter('samples', value=64),
                               Parameter('train.model.epochs', value=3),
                               Parameter('train.model.hidden', value=[64])])
    mpc = config_from_node(node, MPCConfig)
    assert (mpc.samples, mpc.mppi.kappa, mpc.mppi.beta) == (64, 5.0, 0.7)
    assert mpc.planner_config().kappa == 5.0 and node.has_parameter('cem.num_elites')
    train = config_from_node(node, TrainConfig, prefix='train.')
    assert train.model == DynamicsConfig(epochs=3, hidden=(64,), threads=1)
    node.destroy_node()


def _declared(context, kind: str) -> set[str]:
    """Every parameter the ``kind`` node declares from its configs (and by hand)."""
    dirs = [Parameter('bag_dir', value='bag'), Parameter('store_dir', value='models')]
    from dexmpc_ros.control.mpc import MPCConfig
    from dexmpc_ros.control.random_walk import RandomWalkConfig
    from dexmpc_ros.learning.dynamics.training import TrainConfig
    from dexmpc_ros.ros.learner_node import LearnerConfig

    node = make_node(context, dirs)
    if kind == 'mpc':
        config_from_node(node, MPCConfig)
        config_from_node(node, RandomWalkConfig, prefix='random_walk.')
        extra = {'checkpoint', 'explore', 'tick_on_state'}
    else:
        config_from_node(node, LearnerConfig)
        config_from_node(node, TrainConfig, prefix='train.')
        extra = set()
    names = set(node.get_parameters_by_prefix('')) | extra
    node.destroy_node()
    return names


def test_experiments_set_only_parameters_the_mpc_and_learner_declare(context):
    """A renamed parameter left in a YAML would be silently ignored by ROS: none is."""
    from dexmpc_ros.runtime.experiment import available_experiments, load_experiment

    declared = {kind: _declared(context, kind) for kind in ('mpc', 'learner')}
    checked = 0
    for name in available_experiments():
        for node in load_experiment(name).nodes:
            if node.kind in declared:
                unknown = set(node.parameters) - declared[node.kind]
                assert not unknown, f'{name}: {node.name}: {sorted(unknown)}'
                checked += 1
    assert checked >= 8   # 4 learning experiments, each an mpc and a learner node
