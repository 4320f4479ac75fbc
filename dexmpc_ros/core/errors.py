"""
Error hierarchy of the project.

Nodes and the CLI catch these narrow types to decide what to do: fail a lifecycle
transition, command a hold, or print a one-line message and exit non-zero.
"""


class DexmpcError(Exception):
    """Base class of every error raised on purpose by dexmpc_ros."""


class ConfigError(DexmpcError, ValueError):
    """A configuration file or value is malformed; the message names file and key."""


class UnknownExperimentError(ConfigError):
    """An experiment name that has no YAML file; the message lists the available ones."""


class DeviceError(DexmpcError, ConnectionError):
    """A hardware device is absent, refuses to talk or answers wrongly."""


class StaleDataError(DexmpcError):
    """Input data is older than its budget and must not be acted on."""


class BagError(DexmpcError):
    """A rosbag2 directory is missing, corrupt or not what the caller expects."""


class CheckpointError(DexmpcError):
    """A model checkpoint is missing, corrupt or not what the caller expects; names the file."""
