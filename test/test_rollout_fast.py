"""
The fast rollout (folded normalizers, feature-major matmuls, samples split over threads)
equals the straightforward one: repeated :meth:`DeltaDynamics.predict` of every member.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexmpc_ros.learning.dynamics.model import DeltaDynamics
from dexmpc_ros.learning.dynamics.config import DynamicsConfig

NX, NU = 6, 3


def fitted_model(hidden=(32, 32), clip_actions=True, seed=0) -> DeltaDynamics:
    """A model whose three normalizers are far from the identity (offsets, scales)."""
    rng = np.random.default_rng(seed)
    states = rng.normal(2.0, 3.0, (500, NX)) * np.arange(1, NX + 1)
    actions = rng.uniform(-0.8, 0.6, (500, NU))
    next_states = states + rng.normal(0.5, 0.2, (500, NX))
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=hidden, clip_actions=clip_actions,
                                                 seed=seed))
    model.fit(states, actions, next_states, epochs=1)
    return model


def repeated_predict(model: DeltaDynamics, start: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """(E, N, H, nx) by stepping every member on its own predictions."""
    s = start if start.ndim == 2 else np.tile(start, (acts.shape[0], 1))
    steps = []
    for k in range(acts.shape[1]):
        s = model.predict(s, acts[:, k])  # (E, N, nx) after the first step
        steps.append(s)
    return np.stack(steps, axis=2)


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize('n', [1, 50, 130, 700])
@pytest.mark.parametrize('shared_start', [True, False])
def test_fast_rollout_equals_repeated_predict(two_threads, n, shared_start):
    # n = 130 and 700 take the path split over 2 threads, 1 and 50 the single chunk.
    model = fitted_model()
    rng = np.random.default_rng(n)
    start = rng.normal(2.0, 3.0, NX if shared_start else (n, NX))
    acts = rng.uniform(-1.5, 1.5, (n, 5, NU))  # beyond [-1, 1]: clipped at the input
    roll = model.rollout(start, acts)
    expected = repeated_predict(model, start, acts)
    assert roll.shape == (3, n, 5, NX)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(roll, expected, rtol=1e-5, atol=1e-5 * scale)
    assert torch.get_num_threads() == 2  # the split restores the caller's setting


def test_fast_rollout_matches_reference_path_exactly_in_shape_and_closely_in_value(two_threads):
    model = fitted_model(hidden=(40, 24, 16))  # three hidden layers: the middle-layer path
    rng = np.random.default_rng(3)
    start = torch.from_numpy(rng.normal(2.0, 3.0, NX)).float()
    acts = torch.from_numpy(rng.uniform(-1, 1, (300, 4, NU))).float()
    fast = model.rollout(start, acts)
    ref = torch.empty_like(fast)
    with torch.inference_mode():
        model._rollout_reference(ref, start, acts)
    assert isinstance(fast, torch.Tensor) and not fast.is_inference()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_unclipped_model_sees_raw_actions(two_threads):
    model = fitted_model(clip_actions=False)
    rng = np.random.default_rng(4)
    start = rng.normal(2.0, 3.0, NX)
    acts = rng.uniform(-3, 3, (200, 3, NU))
    expected = repeated_predict(model, start, acts)
    np.testing.assert_allclose(model.rollout(start, acts), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(model.rollout(start, np.clip(acts, -1, 1)), expected, atol=1e-3)


def test_folded_weights_follow_training_and_new_normalizers(two_threads):
    model = fitted_model()
    rng = np.random.default_rng(5)
    start, acts = rng.normal(2.0, 3.0, NX), rng.uniform(-1, 1, (150, 3, NU))
    before = model.rollout(start, acts)
    # More training changes weights in place and refits the normalizers on new data.
    states = rng.normal(-1.0, 0.5, (300, NX))
    model.fit(states, rng.uniform(-1, 1, (300, NU)), states + 1.0, epochs=2)
    after = model.rollout(start, acts)
    assert not np.allclose(before, after)
    expected = repeated_predict(model, start, acts)
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_folded_weights_are_computed_once_until_a_weight_or_normalizer_changes():
    from dexmpc_ros.learning.dynamics.fast_rollout import folded_layers
    from dexmpc_ros.learning.normalizer import Normalizer
    model = fitted_model()
    first = folded_layers(model)
    assert folded_layers(model) is first  # planning reuses them (they cost ~2 ms each)
    with torch.no_grad():
        model.net.layers()[1][0].mul_(0.5)  # an in-place update, as an optimizer step does
    second = folded_layers(model)
    assert second is not first and not torch.equal(second[1], first[1])
    assert folded_layers(model) is second
    model.state_norm = Normalizer(model.state_norm.mean + 1.0, model.state_norm.std)
    assert folded_layers(model) is not second


def test_one_thread_and_two_threads_agree():
    model = fitted_model()
    rng = np.random.default_rng(6)
    start, acts = rng.normal(2.0, 3.0, NX), rng.uniform(-1, 1, (256, 4, NU))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = model.rollout(start, acts)
        torch.set_num_threads(2)
        split = model.rollout(start, acts)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_allclose(split, single, rtol=1e-6, atol=1e-6 * np.abs(single).max())
