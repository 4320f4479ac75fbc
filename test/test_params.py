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
