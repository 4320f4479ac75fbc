"""
Model layer without ROS: Normalizer statistics, EnsembleMLP against a per-member loop of
plain matmuls, DeltaDynamics learning a known linear system s' = A s + B a, its
predict/rollout contract (shapes, numpy/torch, clipping, noise only in training,
shared vs bootstrap minibatches), and multi_step_error on hand-built exact and biased
models whose errors have closed forms.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dexmpc_ros.learning.dynamics.model import DeltaDynamics, add_noise
from dexmpc_ros.learning.dynamics.config import DynamicsConfig
from dexmpc_ros.learning.ensemble import EnsembleMLP
from dexmpc_ros.learning.normalizer import Normalizer

NX, NU = 4, 2
# A symmetric, eigenvalues 0.95..0.7 (stable); fixed so every threshold below is reproducible.
_Q = np.linalg.qr(np.random.default_rng(0).standard_normal((NX, NX)))[0]
A = _Q @ np.diag([0.95, 0.9, 0.8, 0.7]) @ _Q.T
B = 0.5 * np.random.default_rng(1).standard_normal((NX, NU))


def linear_data(n: int, seed: int, offset: float = 0.0) -> tuple[np.ndarray, ...]:
    """n i.i.d. transitions of s' = A s + B a, s ~ N(offset, 1), a ~ U[-1, 1]."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, NX)) + offset
    a = rng.uniform(-1.0, 1.0, (n, NU))
    return s, a, s @ A.T + a @ B.T


def linear_episodes(count: int, length: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Episodes (states (T+1, nx), actions (T, nu)) of the linear system from N(0, 1) starts."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        a = rng.uniform(-1.0, 1.0, (length, NU))
        s = np.empty((length + 1, NX))
        s[0] = rng.standard_normal(NX)
        for t in range(length):
            s[t + 1] = A @ s[t] + B @ a[t]
        episodes.append((s, a))
    return episodes


def exact_model(episodes: list[tuple[np.ndarray, np.ndarray]],
                output_offset: np.ndarray | None = None) -> DeltaDynamics:
    """
    A 2x16 ReLU ensemble whose weights compute the linear system exactly.

    Layer 0 makes [relu(x), relu(-x)], layer 1 passes them on, layer 2 applies the
    normalized linear map z = M x + c (relu(x) - relu(-x) = x). ``output_offset`` (nx,)
    is added to c: every member then predicts Δs + σΔ·offset.
    """
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(16, 16), noise_to_signal=0.0))
    s = np.concatenate([ep[0][:-1] for ep in episodes])
    a = np.concatenate([ep[1] for ep in episodes])
    s_next = np.concatenate([ep[0][1:] for ep in episodes])
    model.fit(s, a, s_next, epochs=0)  # normalizers only
    sn, an, dn = model.state_norm, model.action_norm, model.delta_norm
    m = np.hstack([(A - np.eye(NX)) * sn.std, B * an.std]) / dn.std[:, None]
    c = ((A - np.eye(NX)) @ sn.mean + B @ an.mean - dn.mean) / dn.std
    if output_offset is not None:
        c = c + output_offset
    d = NX + NU
    w0, w1, w2 = np.zeros((d, 16)), np.zeros((16, 16)), np.zeros((16, NX))
    w0[:, :d], w0[:, d:2 * d] = np.eye(d), -np.eye(d)
    w1[:d, :d] = w1[d:2 * d, d:2 * d] = np.eye(d)
    w1[d:2 * d, :d] = w1[:d, d:2 * d] = -np.eye(d)
    w2[:d], w2[d:2 * d] = m.T, -m.T
    with torch.no_grad():
        for i, (w, b) in enumerate(((w0, 0.0), (w1, 0.0), (w2, c))):
            getattr(model.net, f'weight_{i}').copy_(torch.as_tensor(w))
            getattr(model.net, f'bias_{i}').copy_(torch.as_tensor(b))
    return model


@pytest.fixture(scope='module', autouse=True)
def one_torch_thread():
    """
    Run torch single-threaded, as the tests share 2 cores with other processes.

    With 2 OpenMP threads and one other busy process, every op waits on a descheduled
    spinning thread: training here measured 3 s with 1 thread and 55 s with 2.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def trained() -> tuple[DeltaDynamics, list[float]]:
    """Default config (3 × 2x250, 40 epochs) fitted on 4000 transitions, with its losses."""
    model = DeltaDynamics(NX, NU)
    losses = model.fit(*linear_data(4000, seed=2))
    return model, losses


# ------------------------------------------------------------------------ Normalizer

def test_normalizer_fit_and_round_trip():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((500, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 0.0]
    norm = Normalizer.from_data(data)
    np.testing.assert_allclose(norm.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.std, data.std(axis=0), rtol=1e-12)
    z = norm.normalize(data)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(norm.denormalize(z), data, rtol=1e-12)
    # torch in, torch out, own dtype; the same numbers within float32 rounding.
    zt = norm.normalize(torch.from_numpy(data).float())
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, atol=1e-5)
    back = norm.denormalize(zt)
    np.testing.assert_allclose(back.numpy(), data, rtol=1e-5, atol=1e-5)
    # JSON round trip is exact.
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert np.array_equal(again.mean, norm.mean) and np.array_equal(again.std, norm.std)


def test_normalizer_constant_dimension_gets_unit_std():
    data = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    norm = Normalizer.from_data(data)
    assert norm.mean.tolist() == [4.5, 3.0]
    assert norm.std[1] == 1.0
    assert np.all(norm.normalize(data)[:, 1] == 0.0)
    # An unseen deviation keeps its raw size instead of being blown up by a tiny std.
    assert norm.normalize(np.array([4.5, 3.5]))[1] == pytest.approx(0.5)


def test_constant_dimensions_are_kept_and_predicted_at_their_mean():
    data = np.array([[0.0, 3.0], [1.0, 3.0], [2.0, 3.0]])
    norm = Normalizer.from_data(data)
    assert norm.constant.tolist() == [False, True]
    assert norm.output_std.tolist() == [norm.std[0], 0.0]
    mean, std = norm.output_stats_like(torch.zeros(5, 2))
    assert (torch.full((5, 2), 7.0) * std + mean)[:, 1].tolist() == [3.0] * 5
    again = Normalizer.from_dict(norm.to_dict())
    assert again.constant.tolist() == [False, True]
    # Normalizers saved before 'constant' existed load with none constant.
    assert not Normalizer.from_dict({'mean': [0.0], 'std': [1.0]}).constant.any()


def test_a_state_column_that_never_changed_does_not_drift_in_rollouts():
    """A Δ that is always 0 in the data (a target) stays exactly put, on both rollout paths."""
    rng = np.random.default_rng(0)
    states = rng.standard_normal((200, 3))
    states[:, 2] = 0.25                                   # constant column, e.g. a target
    actions = rng.uniform(-1, 1, (200, 1))
    nxt = states + 0.1 * np.c_[actions, -actions, np.zeros(200)]
    model = DeltaDynamics(3, 1, DynamicsConfig(hidden=(16,), epochs=3, seed=0))
    model.fit(states, actions, nxt)
    start = np.array([0.5, -0.5, 0.25], dtype=np.float32)
    acts = torch.from_numpy(rng.uniform(-1, 1, (8, 6, 1))).float()
    reference = torch.empty(3, 8, 6, 3)
    with torch.inference_mode():
        model._rollout_reference(reference, torch.from_numpy(start), acts)
    for path in (model.rollout(start, acts), reference):
        assert torch.allclose(path[..., 2], torch.tensor(0.25), atol=1e-6, rtol=0)
        assert path[..., 0].std() > 0.01  # the other columns do move
    assert model.predict(start[None], np.zeros((1, 1)))[..., 2] == pytest.approx(0.25)


def test_normalizer_rejects_bad_input():
    with pytest.raises(ValueError, match=r'dimension\(s\) \[1\]'):
        Normalizer.from_data(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match='last axis must have size 2'):
        Normalizer.identity(2).normalize(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="keys 'mean', 'std'"):
        Normalizer.from_dict({'mean': [0.0]})
    with pytest.raises(ValueError, match='constant must have shape'):
        Normalizer([0.0], [1.0], [True, False])
    with pytest.raises(ValueError, match='std must be > 0'):
        Normalizer([0.0], [0.0])


# ----------------------------------------------------------------------- EnsembleMLP

def test_ensemble_equals_per_member_matmul_loop():
    net = EnsembleMLP(3, 5, 2, hidden=(7, 6), generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 11, 5, generator=torch.Generator().manual_seed(1))
    out = net(x)
    assert out.shape == (3, 11, 2)
    for e in range(3):
        h = x[e]
        for i, (w, b) in enumerate(net.layers()):
            h = h @ w[e] + b[e, 0]
            if i < 2:
                h = torch.clamp(h, min=0.0)
        torch.testing.assert_close(out[e], h, atol=1e-6, rtol=1e-6)
    # A (B, in) input is read by every member: same as expanding it.
    torch.testing.assert_close(net(x[0]), net(x[0].expand(3, 11, 5)))


def test_ensemble_members_are_independent():
    net = EnsembleMLP(3, 4, 2, hidden=(8, 8), generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(1))
    net(x)[0].sum().backward()
    for w, b in net.layers():
        assert w.grad[0].abs().sum() > 0
        assert torch.all(w.grad[1:] == 0) and torch.all(b.grad[1:] == 0)
    before = net(x).detach()
    with torch.no_grad():
        net.weight_1[1] += 1.0
    after = net(x).detach()
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])


def test_ensemble_init_like_linear_and_seeded():
    net = EnsembleMLP(3, 16, 4, hidden=(64,), generator=torch.Generator().manual_seed(5))
    for w, b in net.layers():
        bound = 1.0 / math.sqrt(w.shape[1])
        assert w.abs().max() <= bound and b.abs().max() <= bound
        # Uniform on ±bound: std bound/√3 (4096+ samples per layer, 10 % tolerance).
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert not torch.equal(w[0], w[1])
    same = EnsembleMLP(3, 16, 4, hidden=(64,), generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), same.parameters()))


# --------------------------------------------------------------------- DynamicsConfig

@pytest.mark.parametrize('field, value', [
    ('ensemble_size', 0), ('hidden', (250, 0)), ('hidden', 250), ('lr', 0.0),
    ('lr', float('nan')), ('batch_size', 0), ('epochs', -1), ('noise_to_signal', -0.1),
    ('bootstrap', 1), ('clip_actions', 'yes'), ('seed', -1), ('threads', -1),
    ('ensemble_size', True),
])
def test_config_rejects_bad_value_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        DynamicsConfig(**{field: value})


def test_config_dict_round_trip():
    cfg = DynamicsConfig(hidden=(32, 16), bootstrap=True, seed=4)
    again = DynamicsConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.hidden == (32, 16)
    with pytest.raises(ValueError, match='unknown DynamicsConfig key'):
        DynamicsConfig.from_dict({'hiden': [1]})


# ------------------------------------------------------------------ DeltaDynamics fit

def test_learns_linear_system(trained):
    model, losses = trained
    assert len(losses) == 40
    assert losses[-1] < 0.01 * losses[0]      # measured 0.61 -> 0.00037
    s, a, s_next = linear_data(1000, seed=9)
    pred = model.predict(s, a)
    delta_std = (s_next - s).std()
    rel = np.sqrt(((pred - s_next) ** 2).mean(axis=(1, 2))) / delta_std
    # Measured 0.020-0.022 per member (one-step RMSE over the std of Δs).
    assert np.all(rel < 0.05), rel


def test_members_differ_after_training(trained):
    model, _ = trained
    w = model.net.weight_0.detach()
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    s, a, _ = linear_data(200, seed=10)
    pred = model.predict(s, a)
    spread = np.abs(pred[0] - pred[1]).max()  # measured 0.066
    assert 1e-3 < spread < 0.5


def test_predict_and_rollout_shapes_and_types(trained):
    model, _ = trained
    s, a, _ = linear_data(5, seed=11)
    out = model.predict(s, a)
    assert isinstance(out, np.ndarray) and out.shape == (3, 5, NX) and out.dtype == np.float32
    out_t = model.predict(torch.from_numpy(s), torch.from_numpy(a))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    assert not out_t.is_inference() and not out_t.requires_grad
    np.testing.assert_array_equal(out_t.numpy(), out)
    # (E, B, nx) states: member e steps from its own state.
    per_member = model.predict(out, a)
    for e in range(3):
        np.testing.assert_array_equal(per_member[e], model.predict(out[e], a)[e])
    acts = np.random.default_rng(12).uniform(-1, 1, (6, 7, NU))
    roll = model.rollout(s[0], acts)
    assert isinstance(roll, np.ndarray) and roll.shape == (3, 6, 7, NX)
    roll_t = model.rollout(torch.from_numpy(s[0]), torch.from_numpy(acts))
    assert isinstance(roll_t, torch.Tensor) and roll_t.shape == (3, 6, 7, NX)
    np.testing.assert_array_equal(roll_t.numpy(), roll)
    np.testing.assert_array_equal(model.rollout(np.tile(s[0], (6, 1)), acts), roll)
    with pytest.raises(ValueError, match='actions must be'):
        model.predict(s, a[:, :1])
    with pytest.raises(ValueError, match='state must be'):
        model.rollout(s[:2], acts)


def test_rollout_equals_repeated_predict(trained):
    model, _ = trained
    rng = np.random.default_rng(13)
    start = rng.standard_normal((50, NX))
    acts = rng.uniform(-1, 1, (50, 7, NU))
    roll = model.rollout(start, acts)
    s = start
    for k in range(7):
        s = model.predict(s, acts[:, k])
        np.testing.assert_allclose(roll[:, :, k], s, rtol=1e-6, atol=1e-6)


def test_prediction_is_the_noise_free_formula(trained):
    model, _ = trained
    s, a, _ = linear_data(64, seed=14)
    first = model.predict(s, a)
    np.testing.assert_array_equal(model.predict(s, a), first)
    tensors, _ = model.export()
    x = np.hstack([(s - model.state_norm.mean) / model.state_norm.std,
                   (a - model.action_norm.mean) / model.action_norm.std])
    for e in range(3):
        h = x
        for i in range(3):
            h = h @ tensors[f'weight_{i}'][e].double().numpy() + \
                tensors[f'bias_{i}'][e, 0].double().numpy()
            h = np.maximum(h, 0.0) if i < 2 else h
        expected = s + model.delta_norm.std * h + model.delta_norm.mean
        np.testing.assert_allclose(first[e], expected, rtol=1e-5, atol=1e-5)


def test_add_noise_std_is_fraction_of_mean():
    rng = np.random.default_rng(15)
    data = np.column_stack([np.full(200_000, 4.0), np.full(200_000, -2.0),
                            np.tile([-1.0, 1.0], 100_000)])
    noisy = add_noise(data, 0.01, rng)
    np.testing.assert_allclose((noisy - data).std(axis=0)[:2], [0.04, 0.02], rtol=0.02)
    assert np.array_equal(noisy[:, 2], data[:, 2])  # zero mean: no noise
    assert np.all(data[:, 0] == 4.0)                # input untouched


def test_noise_changes_training_only():
    data = linear_data(600, seed=16, offset=3.0)  # non-zero means, so the noise is not 0
    losses = {}
    weights = {}
    for nts in (0.0, 0.01):
        model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(32, 32), noise_to_signal=nts))
        losses[nts] = model.fit(*data, epochs=1)
        weights[nts] = model.net.weight_0.detach().clone()
        # Normalizers come from the clean data whatever the noise.
        np.testing.assert_allclose(model.state_norm.mean, data[0].mean(axis=0), rtol=1e-12)
    assert not torch.equal(weights[0.0], weights[0.01])


def test_actions_clipped_at_model_input():
    s, a, s_next = linear_data(300, seed=17)
    wide = 3.0 * a
    clipped_model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(32, 32)))
    clipped_model.fit(s, wide, s_next, epochs=0)
    # Normalizer statistics are those of the clipped actions.
    np.testing.assert_allclose(clipped_model.action_norm.mean, np.clip(wide, -1, 1).mean(0))
    np.testing.assert_array_equal(clipped_model.predict(s, wide),
                                  clipped_model.predict(s, np.clip(wide, -1, 1)))
    seqs = np.repeat(wide[:20, None, :], 3, axis=1)
    np.testing.assert_array_equal(clipped_model.rollout(s[:20], seqs),
                                  clipped_model.rollout(s[:20], np.clip(seqs, -1, 1)))
    raw_model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(32, 32), clip_actions=False))
    raw_model.fit(s, wide, s_next, epochs=0)
    assert not np.array_equal(raw_model.predict(s, wide),
                              raw_model.predict(s, np.clip(wide, -1, 1)))


def record_batches(model: DeltaDynamics) -> list[torch.Tensor]:
    """Make ``model.net`` log every input it is given (training minibatches)."""
    seen: list[torch.Tensor] = []
    forward = model.net.forward

    def logging_forward(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach().clone())
        return forward(x)

    model.net.forward = logging_forward
    return seen


def test_members_share_minibatches_without_bootstrap():
    data = linear_data(1000, seed=18)
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(8,), batch_size=300,
                                                 noise_to_signal=0.0))
    seen = record_batches(model)
    model.fit(*data, epochs=1)
    # One (B, in) batch read by all members; together the batches are a permutation.
    assert [tuple(x.shape) for x in seen] == [(300, 6), (300, 6), (300, 6), (100, 6)]
    rows = torch.cat(seen).numpy()
    assert np.unique(rows, axis=0).shape[0] == 1000


def test_bootstrap_gives_each_member_its_own_resample():
    data = linear_data(1000, seed=19)
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(8,), batch_size=250,
                                                 noise_to_signal=0.0, bootstrap=True))
    seen = record_batches(model)
    model.fit(*data, epochs=1)
    assert [tuple(x.shape) for x in seen] == [(3, 250, 6)] * 4
    rows = torch.cat(seen, dim=1).numpy()  # (E, T, in)
    unique = [np.unique(rows[e], axis=0).shape[0] for e in range(3)]
    # Resampling with replacement keeps 1 - 1/e ≈ 63 % distinct rows (± 3 % at T = 1000).
    assert all(600 < u < 665 for u in unique), unique
    assert not np.array_equal(rows[0], rows[1])


def test_fit_epochs_callback_and_threads():
    calls = []
    threads_before = torch.get_num_threads()  # 1, from one_torch_thread
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(8,), threads=2))

    def on_epoch(epoch: int, loss: float) -> bool:
        calls.append((epoch, loss, torch.get_num_threads()))
        return epoch == 1

    losses = model.fit(*linear_data(200, seed=20), epochs=5, on_epoch=on_epoch)
    assert [c[0] for c in calls] == [0, 1] and [c[1] for c in calls] == losses
    assert all(c[2] == 2 for c in calls)
    assert torch.get_num_threads() == threads_before
    with pytest.raises(ValueError, match='next_states'):
        model.fit(np.zeros((5, NX)), np.zeros((5, NU)), np.zeros((4, NX)))
    with pytest.raises(ValueError, match='actions holds NaN'):
        model.fit(np.zeros((5, NX)), np.full((5, NU), np.nan), np.zeros((5, NX)))


# ------------------------------------------------------------------ multi_step_error

def test_multi_step_error_zero_for_exact_model():
    episodes = linear_episodes(4, 30, seed=21)
    model = exact_model(episodes)
    result = model.multi_step_error(episodes, horizon=7)
    assert result['horizon'] == 7 and result['windows'] == 4 * (30 - 7 + 1)
    assert len(result['per_step']) == 7
    # float32 rounding only (measured ≤ 9e-8).
    assert max(result['per_step']) < 1e-5 and result['final'] < 1e-5
    json.dumps(result)


def test_multi_step_error_of_biased_model_matches_closed_form():
    episodes = linear_episodes(4, 30, seed=22)
    offset = np.array([0.05, -0.03, 0.02, 0.04])  # normalized Δ units
    model = exact_model(episodes, output_offset=offset)
    result = model.multi_step_error(episodes, horizon=7)
    # e_{k+1} = A e_k + δ with δ = σΔ·offset, e_0 = 0, whatever the state and action.
    delta = model.delta_norm.std * offset
    err, expected = np.zeros(NX), []
    for _ in range(7):
        err = A @ err + delta
        expected.append(np.sqrt(np.mean((err / model.state_norm.std) ** 2)))
    np.testing.assert_allclose(result['per_step'], expected, rtol=1e-3)
    assert np.all(np.diff(result['per_step']) > 0)
    assert result['mean'] == pytest.approx(np.mean(expected), rel=1e-3)


def test_multi_step_error_of_trained_model_is_small(trained):
    model, _ = trained
    result = model.multi_step_error(linear_episodes(3, 20, seed=23), horizon=5)
    # Measured per_step ≈ [0.006, 0.009, 0.010, 0.011, 0.011] (state-std units).
    assert result['per_step'][0] < 0.03 and result['final'] < 0.05


def test_multi_step_error_rejects_bad_episodes():
    model = DeltaDynamics(NX, NU, DynamicsConfig(hidden=(8,)))
    short = linear_episodes(1, 3, seed=24)
    with pytest.raises(ValueError, match='horizon=5'):
        model.multi_step_error(short, horizon=5)
    with pytest.raises(ValueError, match='episode 0'):
        model.multi_step_error([(np.zeros((4, NX)), np.zeros((4, NU)))], horizon=1)
    with pytest.raises(ValueError, match='horizon must be'):
        model.multi_step_error(short, horizon=0)


def test_new_data_fraction_fills_each_minibatch_with_on_policy_rows():
    model = DeltaDynamics(2, 1, DynamicsConfig(batch_size=10, new_data_fraction=0.9))
    new, old = np.arange(0, 5), np.arange(5, 100)
    order = model._epoch_order(100, (new, old)).numpy().reshape(10, 10)
    assert np.all(np.isin(order[:, :9], new)) and np.all(np.isin(order[:, 9:], old))
    assert len(set(order[:, 9])) == 10  # the old rows are swept, not resampled


def test_new_data_fraction_makes_the_model_follow_the_on_policy_data():
    """Old and new data disagree on the same inputs; MBMF's 0.9 weighting follows the new."""
    rng = np.random.default_rng(0)
    states = rng.uniform(-1, 1, (1000, 1))
    actions = np.zeros((1000, 1))
    is_new = np.arange(1000) < 200                  # 200 new rows: Δ = -1, 800 old: Δ = +1
    nxt = states + np.where(is_new, -1.0, 1.0)[:, None]
    probe = np.array([[0.3]])
    predicted = {}
    for fraction in (0.0, 0.9):
        model = DeltaDynamics(1, 1, DynamicsConfig(hidden=(16,), epochs=300, seed=0,
                                                   noise_to_signal=0.0,
                                                   new_data_fraction=fraction))
        model.fit(states, actions, nxt, is_new=is_new)
        predicted[fraction] = float(model.predict(probe, np.zeros((1, 1))).mean()) - 0.3
    assert predicted[0.0] == pytest.approx(0.6, abs=0.15)   # the count-weighted mean
    assert predicted[0.9] == pytest.approx(-0.8, abs=0.15)  # 0.9 * -1 + 0.1 * +1
    with pytest.raises(ValueError, match='is_new must be'):
        DeltaDynamics(1, 1, DynamicsConfig(new_data_fraction=0.5)).fit(
            states, actions, nxt, is_new=is_new[:10])
    with pytest.raises(ValueError, match='cannot be combined'):
        DynamicsConfig(new_data_fraction=0.5, bootstrap=True)
