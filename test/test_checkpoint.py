"""
Checkpoint directories: a save/load round trip predicts bit for bit the same; every
corruption or mismatch raises CheckpointError naming the file and the problem; a save
that fails after the weights are written leaves nothing behind; the weights file is
plain safetensors (JSON header + raw float32 bytes, no pickle).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dexmpc_ros.core.errors import CheckpointError, DexmpcError
from dexmpc_ros.learning.checkpoint import (FORMAT_VERSION, MANIFEST_FILE, WEIGHTS_FILE,
                                            load_checkpoint, save_checkpoint)
from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig

NX, NU = 3, 2
STATE_NAMES = ['q0', 'q1', 'q2']
ACTION_NAMES = ['u0', 'u1']
EXTRA = {'state_names': STATE_NAMES, 'action_names': ACTION_NAMES, 'robot': 'toy',
         'source_bags': ['bags/run_0', Path('bags/run_1')], 'metrics': {'val_mse': 0.25},
         'extra': {'note': 'unit test'}}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Single-threaded torch: the 2 cores are shared (see test_models.one_torch_thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(hidden: tuple[int, ...] = (16, 16), seed: int = 0) -> DeltaDynamics:
    """A small model trained 2 epochs on random transitions (non-trivial normalizers)."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((300, NX)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -3.0]
    a = rng.uniform(-1.0, 1.0, (300, NU))
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=hidden, seed=seed))
    model.fit(s, a, 0.9 * s + 0.1 * a.sum(axis=1, keepdims=True), epochs=2)
    return model


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, DeltaDynamics]:
    model = make_model()
    return save_checkpoint(tmp_path / 'ckpt', model, EXTRA), model


def edit_manifest(ckpt: Path, **changes) -> None:
    manifest = json.loads((ckpt / MANIFEST_FILE).read_text())
    manifest.update(changes)
    (ckpt / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_round_trip_predicts_identically(saved):
    ckpt, model = saved
    assert ckpt.is_absolute()
    assert sorted(p.name for p in ckpt.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]
    loaded, manifest = load_checkpoint(ckpt, STATE_NAMES, ACTION_NAMES, 'toy')
    rng = np.random.default_rng(1)
    s, a = rng.standard_normal((20, NX)), rng.uniform(-1, 1, (20, 5, NU))
    np.testing.assert_array_equal(loaded.predict(s, a[:, 0]), model.predict(s, a[:, 0]))
    np.testing.assert_array_equal(loaded.rollout(s, a), model.rollout(s, a))
    assert loaded.config == model.config and loaded.fitted
    for key in ('state_norm', 'action_norm', 'delta_norm'):
        assert getattr(loaded, key).to_dict() == getattr(model, key).to_dict()
    assert manifest['format_version'] == FORMAT_VERSION
    assert manifest['state_names'] == STATE_NAMES and manifest['action_names'] == ACTION_NAMES
    assert manifest['robot'] == 'toy' and manifest['source_bags'] == ['bags/run_0', 'bags/run_1']
    assert manifest['metrics'] == {'val_mse': 0.25} and manifest['extra'] == {'note': 'unit test'}
    assert manifest['config'] == model.config.to_dict()
    assert manifest['weights']['sha256'] == hashlib.sha256(
        (ckpt / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert manifest['created'].endswith('+00:00')


def test_weights_file_is_plain_safetensors_without_pickle(saved):
    ckpt, model = saved
    data = (ckpt / WEIGHTS_FILE).read_bytes()
    assert not data.startswith((b'PK', b'\x80'))  # neither torch.save's zip nor a pickle
    (header_len,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + header_len])
    assert header.pop('__metadata__') == {'format': 'pt'}
    tensors, _ = model.export()
    assert set(header) == set(tensors)
    # The rest of the file is exactly the float32 tensor bytes, back to back.
    spans = sorted(tuple(entry['data_offsets']) for entry in header.values())
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == len(data) - 8 - header_len
    for name, entry in header.items():
        assert entry['dtype'] == 'F32' and entry['shape'] == list(tensors[name].shape)
        lo, hi = entry['data_offsets']
        raw = np.frombuffer(data[8 + header_len + lo:8 + header_len + hi], dtype='<f4')
        np.testing.assert_array_equal(raw, tensors[name].numpy().ravel())


def test_existing_target_is_refused(saved):
    ckpt, model = saved
    before = (ckpt / MANIFEST_FILE).read_bytes()
    with pytest.raises(CheckpointError, match='already exists'):
        save_checkpoint(ckpt, make_model(seed=1), EXTRA)
    assert (ckpt / MANIFEST_FILE).read_bytes() == before
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ['ckpt']


def test_failure_after_weights_leaves_nothing(tmp_path, monkeypatch):
    written, visible = [], []

    def crash(obj, fp, **kwargs):
        # Called while the manifest is written: the weights file exists in a temp dir,
        # and nothing exists yet under the final name (what a killed process leaves).
        written.extend(p.name for p in tmp_path.glob('*/' + WEIGHTS_FILE))
        visible.append((tmp_path / 'ckpt').exists())
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(json, 'dump', crash)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint(tmp_path / 'ckpt', make_model(), EXTRA)
    assert written == [WEIGHTS_FILE] and visible == [False]
    assert not (tmp_path / 'ckpt').exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('change, message', [
    ({'robot': None}, 'missing'),
    ({'state_names': ['q0']}, 'state_names must be 3 strings'),
    ({'action_names': ['u0', 'u0']}, 'duplicates'),
    ({'typo': 1}, r"unknown \['typo'\]"),
    ({'metrics': {'val_mse': float('nan')}}, 'not JSON-able'),
    ({'metrics': {'model': object()}}, 'not JSON-able'),
])
def test_bad_manifest_extra_is_rejected_before_writing(tmp_path, change, message):
    extra = {**EXTRA, **change}
    extra = {k: v for k, v in extra.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        save_checkpoint(tmp_path / 'ckpt', make_model(), extra)
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_and_files(saved, tmp_path):
    ckpt, _ = saved
    with pytest.raises(CheckpointError, match='nowhere: checkpoint directory does not exist'):
        load_checkpoint(tmp_path / 'nowhere')
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f'{WEIGHTS_FILE}: missing'):
        load_checkpoint(ckpt)
    (ckpt / MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match=f'{MANIFEST_FILE}: missing'):
        load_checkpoint(ckpt)


def test_bad_json(saved):
    ckpt, _ = saved
    (ckpt / MANIFEST_FILE).write_text('{"format_version": 1,')
    with pytest.raises(CheckpointError, match=f'{MANIFEST_FILE}: invalid JSON'):
        load_checkpoint(ckpt)
    (ckpt / MANIFEST_FILE).write_text('[1, 2]')
    with pytest.raises(CheckpointError, match='expected a JSON object, got list'):
        load_checkpoint(ckpt)


def test_unknown_format_version(saved):
    ckpt, _ = saved
    edit_manifest(ckpt, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError,
                       match=f"{MANIFEST_FILE}: unknown format .* version {FORMAT_VERSION + 1}"):
        load_checkpoint(ckpt)


def test_missing_manifest_key(saved):
    ckpt, _ = saved
    manifest = json.loads((ckpt / MANIFEST_FILE).read_text())
    del manifest['normalizers']
    (ckpt / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['normalizers'\]"):
        load_checkpoint(ckpt)


def test_corrupt_weights_fail_the_checksum(saved):
    ckpt, _ = saved
    data = bytearray((ckpt / WEIGHTS_FILE).read_bytes())
    data[-3] ^= 0x40  # one bit of one float
    (ckpt / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f'{WEIGHTS_FILE}: sha256 .* corrupt'):
        load_checkpoint(ckpt)


def test_tensor_shape_mismatch(saved, tmp_path):
    ckpt, _ = saved
    # Weights of a 16x8 model under the 16x16 manifest, with a matching checksum.
    other = save_checkpoint(tmp_path / 'other', make_model(hidden=(16, 8)), EXTRA)
    (ckpt / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    edit_manifest(ckpt, weights=json.loads((other / MANIFEST_FILE).read_text())['weights'])
    with pytest.raises(CheckpointError, match=(f"{WEIGHTS_FILE} does not match {MANIFEST_FILE}: "
                                               r"tensor 'weight_1' has shape \(3, 16, 8\), "
                                               r"expected \(3, 16, 16\)")):
        load_checkpoint(ckpt)


def test_invalid_config_and_normalizer_in_manifest(saved):
    ckpt, model = saved
    edit_manifest(ckpt, config={**model.config.to_dict(), 'lr': -1.0})
    with pytest.raises(CheckpointError, match=f'{MANIFEST_FILE}: invalid config .*lr'):
        load_checkpoint(ckpt)
    norms = {k: n.to_dict() for k, n in (('state', model.state_norm),
                                         ('action', model.action_norm),
                                         ('delta', model.delta_norm))}
    norms['delta'] = {'mean': [0.0], 'std': [1.0]}
    edit_manifest(ckpt, config=model.config.to_dict(), normalizers=norms)
    with pytest.raises(CheckpointError, match="normalizer 'delta' has 1 dimensions, expected 3"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize('kwargs, message', [
    ({'expect_state_names': ['q0', 'q1', 'x']}, r"state_names differ .*missing \['x'\], "
                                                r"unexpected \['q2'\]"),
    ({'expect_state_names': ['q0', 'q2', 'q1']}, "state_names differ .*another order: index 1 "
                                                 "is 'q1' here, 'q2' expected"),
    ({'expect_action_names': ['u0']}, r"action_names differ .*unexpected \['u1'\]"),
    ({'expect_robot': 'widowx'}, "robot is 'toy', expected 'widowx'"),
])
def test_names_and_robot_mismatch(saved, kwargs, message):
    ckpt, _ = saved
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(ckpt, **kwargs)
    assert MANIFEST_FILE in str(info.value) and isinstance(info.value, DexmpcError)
