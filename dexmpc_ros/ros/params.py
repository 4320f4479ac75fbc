"""
Declare ROS parameters from a frozen config dataclass and read them back.

A node calls ``config_from_node(node, SomeConfig, prefix)``: every dataclass field
becomes a declared parameter (default = the field default, description = the field's
line in the class docstring), and the filled dataclass validates itself. One schema,
no second list of parameter names to keep in sync (CONVENTIONS.md §3).
"""

from __future__ import annotations

import array
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from dexmpc_ros.core.errors import ConfigError

T = TypeVar('T')

#: Placeholder for "None" in ROS parameters, which have no null.
NONE_INT = -1


def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> its description from the ``Attributes:`` docstring section."""
    docs: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or '').splitlines():
        match = re.match(r'\s{8}(\w+): (.*)', line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith(' ' * 12):
            docs[current] += ' ' + line.strip()
    return docs


def declare(node: Node, name: str, default: Any, description: str = '') -> Any:
    """
    Declare one parameter (if not yet declared) and return its value.

    The value must have the default's type; an int is accepted (and converted) where a
    float is expected, since YAML writes ``1`` for ``1.0``.

    Raises:
        ConfigError: naming the node and parameter, when the type is wrong.
    """
    if not node.has_parameter(name):
        node.declare_parameter(name, default, ParameterDescriptor(
            description=description, dynamic_typing=True))
    value = node.get_parameter(name).value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, Sequence | array.array):
        return type(default)(value)  # DOUBLE_ARRAY comes back as array.array
    if type(value) is not type(default):
        raise ConfigError(f'node {node.get_name()}: parameter {name} must be '
                          f'{type(default).__name__}, got {value!r}')
    return value


def config_from_node(node: Node, cls: type[T], prefix: str = '') -> T:
    """
    Declare a parameter per field of dataclass ``cls`` and build the config.

    A field whose default is itself a dataclass (a nested config, e.g. the planner's
    settings inside the MPC's) becomes a group of parameters ``<prefix><field>.<name>``,
    with that default's values as defaults, built and validated before ``cls``. Fields
    defaulting to None are declared as ints with ``NONE_INT`` standing for None (used for
    RNG seeds). Raises ConfigError naming the node and parameter on invalid values.
    """
    defaults = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
        else:
            raise TypeError(f'{cls.__name__}.{f.name} needs a default to be a ROS parameter')
    return _build(node, cls, defaults, prefix)


def _build(node: Node, cls: type[T], defaults: dict[str, Any], prefix: str) -> T:
    """``cls`` from parameters ``<prefix><name>`` declared with ``defaults``."""
    docs = field_docs(cls)
    values = {}
    for name, default in defaults.items():
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            values[name] = _build(node, type(default), {
                f.name: getattr(default, f.name) for f in dataclasses.fields(default)},
                f'{prefix}{name}.')
            continue
        ros_default = NONE_INT if default is None else default
        value = declare(node, prefix + name, ros_default, docs.get(name, ''))
        if default is None and value == NONE_INT:
            value = None
        values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'node {node.get_name()}: parameter {prefix}*: {exc}') from exc


def parse_options(text: str, where: str) -> dict:
    """A YAML mapping string (a ROS parameter) -> dict; ConfigError naming ``where``."""
    try:
        options = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f'{where} is not valid YAML: {exc}') from exc
    if not isinstance(options, dict):
        raise ConfigError(f'{where} must be a YAML mapping, got {options!r}')
    return options
