"""
Checkpoint directories of :class:`DeltaDynamics`: self-describing, atomic, pickle-free.

A checkpoint is a directory holding two files:

- ``model.safetensors``: the network parameters (``weight_i``, ``bias_i``, float32),
  written with ``safetensors`` (a JSON header and raw tensor bytes; loading it can not
  execute code, unlike a pickle-based ``torch.save`` file);
- ``manifest.json``: ``format`` and ``format_version``, ``created`` (UTC ISO 8601),
  ``state_dim``/``action_dim``, the resolved ``config``, the normalizer statistics
  (``normalizers``), ``state_names``, ``action_names``, ``robot``, ``source_bags``,
  ``metrics``, ``extra`` (free JSON for the caller), ``weights`` (file name, byte size and
  sha256) and the ``software`` versions that wrote it.

:func:`save_checkpoint` builds both files in a hidden temporary sibling directory,
fsyncs them and the directory, then renames it to the final name, so a reader sees
either no checkpoint or a complete one; a failure removes the temporary directory (only
a killed process can leave one behind, under a ``.<name>.*.tmp`` name, never under the
final name). An existing target is refused, never overwritten.

:func:`load_checkpoint` checks everything before it returns, and raises
:class:`CheckpointError` naming the file and the problem otherwise: a missing file, bad
JSON, an unknown format version, a sha256 mismatch (corrupt weights), tensors whose
names or shapes disagree with the manifest, and state/action names or robot differing
from what the caller expects.

The directory mechanics do not depend on the model: :func:`write_checkpoint_dir` and
:func:`read_checkpoint_dir` write and verify any ``{name: tensor}`` dict with a manifest of
a given ``format``, and :func:`load_checkpoint_dir` adds the rebuild and the name/robot
checks; :func:`build_manifest` makes the manifest of a model's ``export()``. The MLP policy
checkpoints of ``learning/policies/mlp.py`` are written and read by these same functions under
their own ``format``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import Tensor

import dexmpc_ros
from dexmpc_ros.core.errors import CheckpointError
from dexmpc_ros.core.files import default_mode, fsync_path
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig

FORMAT = 'dexmpc_ros.delta_dynamics'
#: Manifest layout version this code writes and reads.
FORMAT_VERSION = 1
WEIGHTS_FILE = 'model.safetensors'
MANIFEST_FILE = 'manifest.json'

_REQUIRED_EXTRA = ('state_names', 'action_names', 'robot')
_OPTIONAL_EXTRA = ('source_bags', 'metrics', 'extra')
_MANIFEST_KEYS = ('format', 'format_version', 'created', 'state_dim', 'action_dim', 'config',
                  'normalizers', *_REQUIRED_EXTRA, 'source_bags', 'metrics', 'weights')

Model = TypeVar('Model')


def save_checkpoint(directory: str | os.PathLike[str], dynamics: DeltaDynamics,
                    manifest_extra: Mapping[str, Any]) -> Path:
    """
    Write ``dynamics`` as a new checkpoint directory, atomically.

    Args:
        directory: the checkpoint directory to create (its parent is created if needed).
        dynamics: the model (weights, normalizers and config are saved).
        manifest_extra: ``state_names`` (nx str), ``action_names`` (nu str) and ``robot``
            (str) are required; ``source_bags`` (list of str/paths), ``metrics`` (dict)
            and ``extra`` (dict) are optional. Everything must be JSON-able.

    Returns:
        The absolute path of the checkpoint directory.

    Raises:
        CheckpointError: the target already exists.
        ValueError: ``manifest_extra`` has an unknown key, lacks a required one, or holds
            a value of the wrong type/length or that JSON can not represent.
    """
    tensors, meta = dynamics.export()
    return write_checkpoint_dir(directory, tensors, build_manifest(meta, manifest_extra))


def load_checkpoint(directory: str | os.PathLike[str],
                    expect_state_names: Sequence[str] | None = None,
                    expect_action_names: Sequence[str] | None = None,
                    expect_robot: str | None = None) -> tuple[DeltaDynamics, dict[str, Any]]:
    """
    Load and verify a checkpoint written by :func:`save_checkpoint`.

    Args:
        directory: the checkpoint directory.
        expect_state_names: if given, the manifest's state_names must equal it (in order).
        expect_action_names: likewise for action_names.
        expect_robot: if given, the manifest's robot must equal it.

    Returns:
        ``(model, manifest)``: the model in eval mode and the manifest as a dict.

    Raises:
        CheckpointError: any problem; the message names the file and says what is wrong.
    """
    manifest_path = Path(directory) / MANIFEST_FILE

    def build(tensors: dict[str, Tensor], manifest: dict[str, Any]) -> DeltaDynamics:
        # Checked apart so that a bad config is reported as such, not as weights that do
        # not match the manifest.
        if not isinstance(manifest['config'], dict):
            raise CheckpointError(f'{manifest_path}: config must be an object, got '
                                  f"{manifest['config']!r}")
        try:
            DynamicsConfig.from_dict(manifest['config'])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f'{manifest_path}: invalid config ({exc})') from None
        return DeltaDynamics.from_export(tensors, {
            key: manifest[key] for key in ('state_dim', 'action_dim', 'config', 'normalizers')})

    model, manifest = load_checkpoint_dir(directory, FORMAT, FORMAT_VERSION, build,
                                          expect_state_names, expect_action_names,
                                          expect_robot)
    model.net.eval()
    return model, manifest


# ------------------------------------------------------------- model-agnostic directories

def build_manifest(meta: Mapping[str, Any], extra: Mapping[str, Any], fmt: str = FORMAT,
                   version: int = FORMAT_VERSION) -> dict[str, Any]:
    """
    Manifest of a model export, without its ``weights`` entry (the writer adds it).

    Args:
        meta: the model's ``export()`` meta: ``state_dim``, ``action_dim``, ``config`` and
            ``normalizers``.
        extra: the caller's ``manifest_extra`` (see :func:`save_checkpoint`).
        fmt: the manifest's ``format``.
        version: its ``format_version``.

    Returns:
        A new dict, keys in the order they are written.

    Raises:
        ValueError: ``extra`` has an unknown key, lacks a required one, or holds a value of
            the wrong type or length.
    """
    unknown = sorted(set(extra) - set(_REQUIRED_EXTRA) - set(_OPTIONAL_EXTRA))
    absent = [key for key in _REQUIRED_EXTRA if key not in extra]
    if unknown or absent:
        raise ValueError(f'manifest_extra: missing {absent}, unknown {unknown}; allowed keys: '
                         f'{[*_REQUIRED_EXTRA, *_OPTIONAL_EXTRA]}')
    for key, dim in (('state_names', meta['state_dim']), ('action_names', meta['action_dim'])):
        names = extra[key]
        if isinstance(names, str) or not all(isinstance(n, str) for n in names) \
                or len(names) != dim:
            raise ValueError(f'manifest_extra {key} must be {dim} strings, got {names!r}')
        if len(set(names)) != len(names):
            raise ValueError(f'manifest_extra {key} has duplicates: {names!r}')
    if not isinstance(extra['robot'], str) or not extra['robot']:
        raise ValueError(f"manifest_extra robot must be a non-empty str, got {extra['robot']!r}")
    bags = extra.get('source_bags', [])
    if isinstance(bags, (str, os.PathLike)):
        raise ValueError(f'manifest_extra source_bags must be a list, got {bags!r}')
    for key in ('metrics', 'extra'):
        if not isinstance(extra.get(key, {}), Mapping):
            raise ValueError(f'manifest_extra {key} must be a dict, got {extra[key]!r}')
    return {
        'format': fmt,
        'format_version': version,
        'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'state_dim': meta['state_dim'],
        'action_dim': meta['action_dim'],
        'config': meta['config'],
        'normalizers': meta['normalizers'],
        'state_names': list(extra['state_names']),
        'action_names': list(extra['action_names']),
        'robot': extra['robot'],
        'source_bags': [os.fspath(bag) for bag in bags],
        'metrics': dict(extra.get('metrics', {})),
        'extra': dict(extra.get('extra', {})),
        'software': {'dexmpc_ros': dexmpc_ros.__version__, 'torch': torch.__version__,
                     'safetensors': safetensors.__version__},
    }


def write_checkpoint_dir(directory: str | os.PathLike[str], tensors: Mapping[str, Tensor],
                         manifest: Mapping[str, Any]) -> Path:
    """
    Create a checkpoint directory from tensors and a manifest, atomically.

    The files are written into a hidden temporary sibling (``.<name>.*.tmp``, mode
    ``0o777 & ~umask`` like any ``mkdir``), fsynced with the directory, and the directory
    is renamed to its final name; any failure removes the temporary directory.

    Args:
        directory: the directory to create (its parent is created if needed).
        tensors: contiguous tensors by name, saved as ``model.safetensors``.
        manifest: JSON-able manifest (e.g. from :func:`build_manifest`), without
            ``weights``: it is saved as ``manifest.json`` with ``weights`` (file name, byte
            size, sha256) appended; the caller's dict is not modified.

    Returns:
        The absolute path of the checkpoint directory.

    Raises:
        CheckpointError: the target already exists (it is never overwritten).
        ValueError: the manifest is not JSON-able or already holds ``weights``.
    """
    final = Path(directory).absolute()
    if 'weights' in manifest:
        raise ValueError("manifest must not hold 'weights': the writer adds it")
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'manifest is not JSON-able (check manifest_extra): {exc}') from None
    if final.exists() or final.is_symlink():
        raise CheckpointError(f'{final}: already exists; a checkpoint is never overwritten')
    final.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f'.{final.name}.', suffix='.tmp', dir=final.parent))
    try:
        # mkdtemp's 0o700 would make the checkpoint private to this user
        os.chmod(tmp, default_mode(directory=True))
        weights = safetensors.torch.save(dict(tensors), metadata={'format': 'pt'})
        with open(tmp / WEIGHTS_FILE, 'wb') as f:
            f.write(weights)
            f.flush()
            os.fsync(f.fileno())
        complete = {**manifest, 'weights': {'file': WEIGHTS_FILE, 'bytes': len(weights),
                                            'sha256': hashlib.sha256(weights).hexdigest()}}
        with open(tmp / MANIFEST_FILE, 'w', encoding='utf-8') as f:
            json.dump(complete, f, indent=2, allow_nan=False)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        fsync_path(tmp)
        if final.exists() or final.is_symlink():
            raise CheckpointError(f'{final}: appeared while saving; not overwritten')
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(final.parent)
    return final


def read_checkpoint_dir(directory: str | os.PathLike[str], fmt: str, version: int
                        ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """
    Read and verify the files of a checkpoint directory (not what the tensors mean).

    Checks that the directory and both files exist, that the manifest is a JSON object of
    format ``fmt`` version ``version`` holding every manifest key, that the weights match
    the manifest's sha256 and parse as safetensors.

    Args:
        directory: the checkpoint directory.
        fmt: the ``format`` the manifest must have.
        version: the ``format_version`` it must have.

    Returns:
        ``(manifest, tensors)``.

    Raises:
        CheckpointError: any problem; the message names the file and says what is wrong.
    """
    root = Path(directory)
    manifest_path, weights_path = root / MANIFEST_FILE, root / WEIGHTS_FILE
    if not root.is_dir():
        raise CheckpointError(f'{root}: checkpoint directory does not exist')
    if not manifest_path.is_file():
        raise CheckpointError(f'{manifest_path}: missing (not a checkpoint directory?)')
    try:
        manifest = json.loads(manifest_path.read_text(encoding='utf-8'))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f'{manifest_path}: invalid JSON ({exc})') from None
    if not isinstance(manifest, dict):
        raise CheckpointError(f'{manifest_path}: expected a JSON object, got '
                              f'{type(manifest).__name__}')
    found = manifest.get('format_version')
    if manifest.get('format') != fmt or found != version:
        raise CheckpointError(
            f'{manifest_path}: unknown format {manifest.get("format")!r} version {found!r}; '
            f'this dexmpc_ros reads {fmt!r} version {version}')
    missing = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CheckpointError(f'{manifest_path}: missing key(s) {missing}')

    if not weights_path.is_file():
        raise CheckpointError(f'{weights_path}: missing')
    data = weights_path.read_bytes()
    expected_sha = (manifest['weights'].get('sha256')
                    if isinstance(manifest['weights'], dict) else None)
    actual_sha = hashlib.sha256(data).hexdigest()
    if actual_sha != expected_sha:
        raise CheckpointError(
            f'{weights_path}: sha256 {actual_sha} does not match the manifest '
            f'({expected_sha}); the weights file is corrupt or was replaced')
    try:
        # Parsed from the very bytes that were hashed: nothing can change in between.
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise CheckpointError(f'{weights_path}: not a readable safetensors file ({exc})') from None
    return manifest, tensors


def load_checkpoint_dir(directory: str | os.PathLike[str], fmt: str, version: int,
                        build: Callable[[dict[str, Tensor], dict[str, Any]], Model],
                        expect_state_names: Sequence[str] | None = None,
                        expect_action_names: Sequence[str] | None = None,
                        expect_robot: str | None = None) -> tuple[Model, dict[str, Any]]:
    """
    :func:`read_checkpoint_dir`, rebuild the model, and check its names and robot.

    Args:
        directory: the checkpoint directory.
        fmt: the ``format`` the manifest must have.
        version: the ``format_version`` it must have.
        build: ``build(tensors, manifest)`` returns the model; it raises ValueError or
            TypeError when the tensors do not fit the manifest, whose ``state_dim`` and
            ``action_dim`` it must check (the names are checked against them), or a
            :class:`CheckpointError` of its own.
        expect_state_names, expect_action_names, expect_robot: as for
            :func:`load_checkpoint`.

    Returns:
        ``(model, manifest)``, the model as ``build`` returned it.

    Raises:
        CheckpointError: any problem; the message names the file and says what is wrong.
    """
    root = Path(directory)
    manifest, tensors = read_checkpoint_dir(root, fmt, version)
    manifest_path = root / MANIFEST_FILE
    try:
        model = build(tensors, manifest)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f'{root / WEIGHTS_FILE} does not match {MANIFEST_FILE}: {exc}') \
            from None

    for key, dim, expected in (('state_names', manifest['state_dim'], expect_state_names),
                               ('action_names', manifest['action_dim'], expect_action_names)):
        names = manifest[key]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                and len(names) == dim):
            raise CheckpointError(f'{manifest_path}: {key} must be a list of {dim} strings, '
                                  f'got {names!r}')
        if expected is not None and list(expected) != names:
            raise CheckpointError(f'{manifest_path}: {key} differ from the expected ones: '
                                  f'{_name_diff(names, list(expected))}')
    if expect_robot is not None and manifest['robot'] != expect_robot:
        raise CheckpointError(f'{manifest_path}: robot is {manifest["robot"]!r}, expected '
                              f'{expect_robot!r}')
    return model, manifest


def _name_diff(actual: list[str], expected: list[str]) -> str:
    """Human-readable difference of two name lists (missing, unexpected, or order)."""
    missing = [n for n in expected if n not in actual]
    unexpected = [n for n in actual if n not in expected]
    if missing or unexpected:
        return f'missing {missing}, unexpected {unexpected}'
    if len(actual) != len(expected):
        return f'{len(actual)} names, expected {len(expected)} (duplicates)'
    i = next(i for i, (a, e) in enumerate(zip(actual, expected)) if a != e)
    return (f'same names in another order: index {i} is {actual[i]!r} here, '
            f'{expected[i]!r} expected')
