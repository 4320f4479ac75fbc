"""
Load YAML files so that every error names the file and the key.

All project YAML (robot specs, experiments, parameter files) goes through
:func:`load_yaml_mapping` and the ``require_*`` helpers, so a malformed file never
surfaces as a bare ``KeyError`` or ``TypeError`` deep inside a node.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from dexmpc_ros.core.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode,
                       deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f'duplicate key {key!r}', key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _construct_mapping)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """
    Read a YAML file whose top level must be a mapping.

    Raises:
        ConfigError: the file is missing, is not valid YAML (duplicate keys included), or
            is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f'{path}: cannot read ({exc.strerror})') from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = ''
        mark = getattr(exc, 'problem_mark', None)
        if mark is not None:
            where = f' at line {mark.line + 1}, column {mark.column + 1}'
        raise ConfigError(f'{path}: invalid YAML{where}: {getattr(exc, "problem", exc)}') from exc
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: top level must be a mapping, got {type(data).__name__}')
    return data


def require(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """
    Return ``mapping[key]`` checked against ``kind``.

    Args:
        mapping: the parsed YAML mapping.
        key: the key that must be present.
        kind: accepted Python type(s); ``float`` also accepts ``int``.
        where: ``"<file>: <dotted.parent>"`` used to build the error message.

    Raises:
        ConfigError: naming the file and the full key when absent or of the wrong type.
    """
    if not isinstance(mapping, dict):
        raise ConfigError(f'{where}: expected a mapping, got {type(mapping).__name__}')
    if key not in mapping:
        raise ConfigError(f'{where}.{key}: missing required key'.replace(': .', ': '))
    return check_type(mapping[key], kind, f'{where}.{key}'.replace(': .', ': '))


def optional(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
             default: Any) -> Any:
    """Like :func:`require` but return ``default`` when the key is absent."""
    if key not in mapping or mapping[key] is None:
        return default
    return check_type(mapping[key], kind, f'{where}.{key}'.replace(': .', ': '))


def check_type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """Check one value's type; ints are accepted where floats are asked for."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f'{where}: expected {_names(kinds)}, got a boolean ({value})')
    if not isinstance(value, kinds):
        raise ConfigError(f'{where}: expected {_names(kinds)}, got {type(value).__name__} '
                          f'({value!r})')
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f'{where}: NaN is not allowed')
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return ' or '.join(k.__name__ for k in kinds)
