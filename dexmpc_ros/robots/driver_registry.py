"""
Driver registry: a name and an options mapping -> a constructed (not yet connected) Driver.

    driver = make_driver('widowx', spec, {'port': '/dev/ttyUSB0'})
    driver.connect()                      # the lifecycle node does this in on_configure

Names: ``widowx`` (:class:`~dexmpc_ros.robots.widowx.driver.WidowXDriver`), ``roach``
(:class:`~dexmpc_ros.robots.roach.driver.RoachDriver`), or a ``package.module:Class`` path
to any other :class:`~dexmpc_ros.robots.driver.Driver` (a test double, a site's own
driver). Driver modules are imported lazily: asking for the roach never imports
``dynamixel_sdk``.

Construction contract: ``DriverClass(config, spec)``, where ``config`` is a frozen
dataclass. Its starting value is ``ConfigClass.from_spec(spec)`` when the class has it
(which reads the robot YAML's ``driver:`` section: port, baud rate, ...), else
``ConfigClass()``; then ``options`` override fields by name. A ``module:Class`` driver
names its config dataclass in a ``config_class`` attribute (none: options must be empty).

Options keys:

* a field of the config dataclass (``port``, ``baudrate``, ``retries``, ...), or an alias
  the robot YAML uses (``baud`` -> ``baudrate``);
* any other key of the robot YAML's ``driver:`` section, so the whole section may be passed
  as options (``dexmpc up`` does): such keys are robot data the driver reads from the spec
  itself (servo IDs, gripper geometry), so their value must equal the spec's;
* anything else is a :class:`ConfigError` naming the key and listing the known ones.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from dexmpc_ros.core.errors import ConfigError
from dexmpc_ros.core.robot_spec import RobotSpec
from dexmpc_ros.robots.driver import Driver
from dexmpc_ros.robots.registry import ROBOTS

#: robot-YAML key -> config field, for every driver.
ALIASES: Mapping[str, str] = {'baud': 'baudrate'}


@dataclass(frozen=True)
class DriverEntry:
    """
    Where a registered driver lives.

    Attributes:
        module: importable module holding both classes.
        driver_class: the Driver subclass, built as ``driver_class(config, spec)``.
        config_class: its frozen config dataclass.
    """

    module: str
    driver_class: str
    config_class: str


#: registry name -> driver; the name is also the robot spec it drives by default.
DRIVERS: dict[str, DriverEntry] = {
    name: DriverEntry(f'{entry.package}.driver', *entry.driver_classes)
    for name, entry in ROBOTS.items() if entry.driver_classes is not None}


def available_drivers() -> list[str]:
    """Registered driver names, sorted (``module:Class`` paths work too)."""
    return sorted(DRIVERS)


def resolve_classes(name: str) -> tuple[type, type | None]:
    """
    (driver class, config dataclass or None) for a registry name or ``module:Class`` path.

    Raises:
        ConfigError: unknown name, unimportable module or missing class (named).
    """
    if name in DRIVERS:
        entry = DRIVERS[name]
        module = _import(entry.module, name)
        return getattr(module, entry.driver_class), getattr(module, entry.config_class)
    if ':' not in name:
        raise ConfigError(f'unknown driver {name!r}; available: '
                          f'{", ".join(available_drivers())} or a package.module:Class path')
    module_name, class_name = name.split(':', 1)
    cls = getattr(_import(module_name, name), class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f'driver {name!r}: {module_name} has no Driver subclass '
                          f'{class_name!r}')
    return cls, getattr(cls, 'config_class', None)


def _import(module: str, name: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f'driver {name!r}: cannot import {module} ({exc})') from exc


def build_config(config_class: type, spec: RobotSpec, options: Mapping[str, Any],
                 driver: str = '') -> Any:
    """
    The driver's config: ``from_spec(spec)`` (or the defaults), then ``options``.

    Raises:
        ConfigError: an unknown key, a robot-data key whose value differs from the spec's,
            or a value the dataclass rejects; the message names the key and driver.
    """
    where = f'driver {driver or config_class.__name__} options'
    known = {f.name for f in dataclasses.fields(config_class)}
    overrides: dict[str, Any] = {}
    for key, value in options.items():
        field = ALIASES.get(key, key)
        if field in known:
            overrides[field] = value
        elif key in spec.driver:
            if value != spec.driver[key]:
                raise ConfigError(
                    f'{where}: {key!r} is robot data the driver reads from '
                    f'{spec.source or spec.name} (driver: {key}); it cannot be overridden '
                    f'here: edit the robot YAML')
        else:
            raise ConfigError(f'{where}: unknown key {key!r}; known: {", ".join(sorted(known))}'
                              f' (or keys of the robot YAML driver: section)')
    try:
        base = (config_class.from_spec(spec) if hasattr(config_class, 'from_spec')
                else config_class())
        return dataclasses.replace(base, **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{where} {sorted(overrides)}: {exc}') from exc


def make_driver(name: str, spec: RobotSpec, options: Mapping[str, Any] | None = None
                ) -> Driver:
    """
    Build (without connecting) the driver ``name`` for robot ``spec``.

    Args:
        name: a registry name (``widowx``, ``roach``) or a ``package.module:Class`` path.
        spec: the robot it drives (joint names and order, limits, ``driver:`` section).
        options: config overrides (see the module docstring); None = none.

    Raises:
        ConfigError: unknown driver, bad option key or value (named).
    """
    options = dict(options or {})
    driver_class, config_class = resolve_classes(name)
    if config_class is None:
        if options:
            raise ConfigError(f'driver {name!r} takes no options, got {sorted(options)}')
        return driver_class(None, spec)
    config = build_config(config_class, spec, options, name)
    try:
        return driver_class(config, spec)
    except ValueError as exc:          # e.g. a spec the driver cannot drive
        raise ConfigError(f'driver {name!r} for robot {spec.name}: {exc}') from exc
