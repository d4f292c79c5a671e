"""The Rbm type, model files, exact quantities, AIS, mode search and sampling."""

import gc
import math
import os
import subprocess

import numpy as np
import pytest

import marbm
from conftest import all_states, brute_log_z


def test_zero_model_and_sizes():
    rbm = marbm.Rbm(3, 2)
    assert (rbm.n_visible, rbm.n_hidden) == (3, 2)
    assert rbm.weights.shape == (3, 2) and rbm.weights.dtype == np.float32
    assert not rbm.weights.any() and not rbm.visible_bias.any() and not rbm.hidden_bias.any()
    assert math.isclose(marbm.log_partition_exact(rbm), 5 * math.log(2), rel_tol=1e-12)
    with pytest.raises(marbm.UsageError):
        marbm.Rbm(0, 2)


def test_parameters_are_views_of_the_library_memory():
    rbm = marbm.Rbm.random(6, 4, sigma=0.1, seed=3)
    for name in ("weights", "visible_bias", "hidden_bias"):
        array = getattr(rbm, name)
        assert array.ctypes.data == rbm._address(name)
        assert getattr(rbm, name).ctypes.data == array.ctypes.data
    w = rbm.weights
    w[2, 3] = 1.25
    rbm.hidden_bias[:] = -0.5
    assert rbm.weights[2, 3] == np.float32(1.25)
    e = rbm.energy(np.zeros(6, np.uint8), np.ones(4, np.uint8))
    assert e == pytest.approx(2.0)  # -b.h with b = -0.5 on four units
    # The view keeps the model alive.
    address = rbm._address("weights")
    del rbm
    gc.collect()
    assert w.ctypes.data == address and w[2, 3] == np.float32(1.25)


class DLPackOnly:
    """An object that offers its memory only through DLPack (no buffer protocol)."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_dlpack_in_and_out_without_torch():
    rbm = marbm.Rbm.random(5, 3, sigma=0.2, seed=4)
    shared = np.from_dlpack(rbm.weights)
    assert shared.ctypes.data == rbm._address("weights")
    states = all_states(5)
    np.testing.assert_array_equal(rbm.free_energy(DLPackOnly(states)), rbm.free_energy(states))
    data = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 0]], np.uint8)
    a = marbm.train(DLPackOnly(data), hidden=2, iters=10, batch=2, seed=1)
    b = marbm.train(data, hidden=2, iters=10, batch=2, seed=1)
    assert a.model == b.model


def test_pickle_round_trip():
    import pickle

    rbm = marbm.Rbm.random(4, 3, sigma=0.5, seed=8)
    again = pickle.loads(pickle.dumps(rbm))
    assert again == rbm and again._address("weights") != rbm._address("weights")


def test_random_is_deterministic_and_from_arrays_copies():
    a = marbm.Rbm.random(4, 3, sigma=0.5, seed=11)
    b = marbm.Rbm.random(4, 3, sigma=0.5, seed=11)
    c = marbm.Rbm.random(4, 3, sigma=0.5, seed=12)
    assert a == b and not (a == c)
    d = marbm.Rbm.from_arrays(a.weights.astype(np.float64), a.visible_bias, a.hidden_bias)
    assert d == a and d._address("weights") != a._address("weights")
    e = a.copy()
    e.weights[0, 0] += 1
    assert not (e == a)
    with pytest.raises(marbm.UsageError, match=r"visible_bias: expected shape \(4,\), got \(3,\)"):
        marbm.Rbm.from_arrays(a.weights, np.zeros(3), a.hidden_bias)


def test_energy_free_energy_and_conditionals_match_formulas(small_rbm):
    w = small_rbm.weights.astype(np.float64)
    a = small_rbm.visible_bias.astype(np.float64)
    b = small_rbm.hidden_bias.astype(np.float64)
    v = all_states(5)
    h = all_states(4)[np.arange(32) % 16]
    expected = -(v @ a) - (h @ b) - np.einsum("ri,ij,rj->r", v, w, h)
    np.testing.assert_allclose(small_rbm.energy(v, h), expected, rtol=1e-12, atol=1e-12)
    assert small_rbm.energy(v[3], h[3]) == pytest.approx(expected[3], abs=1e-12)
    # F(v) = -log sum_h exp(-E(v, h))
    hs = all_states(4).astype(np.float64)
    minus_e = (v @ a)[:, None] + (hs @ b)[None, :] + v @ w @ hs.T
    np.testing.assert_allclose(small_rbm.free_energy(v), -np.log(np.exp(minus_e).sum(1)), rtol=1e-10)
    np.testing.assert_allclose(small_rbm.hidden_probabilities(v), 1 / (1 + np.exp(-(b + v @ w))), rtol=1e-12)
    np.testing.assert_allclose(
        small_rbm.visible_probabilities(hs), 1 / (1 + np.exp(-(a + hs @ w.T))), rtol=1e-12
    )
    # Any real or boolean dtype, any strides, same answer.
    np.testing.assert_allclose(small_rbm.free_energy(v.astype(bool)), small_rbm.free_energy(v))
    np.testing.assert_allclose(small_rbm.free_energy(np.asfortranarray(v.astype(np.float32))), small_rbm.free_energy(v))


def test_exact_log_z_probabilities_kl(small_rbm):
    w, a, b = small_rbm.weights, small_rbm.visible_bias, small_rbm.hidden_bias
    log_z = marbm.log_partition_exact(small_rbm)
    assert log_z == pytest.approx(brute_log_z(w, a, b), abs=1e-9)
    log_p = marbm.log_probability(small_rbm, all_states(5))
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-12)
    data = all_states(5)[[1, 4, 4, 9]]
    mll = marbm.mean_log_likelihood(small_rbm, data)
    assert mll == pytest.approx(np.mean(marbm.log_probability(small_rbm, data)), abs=1e-12)
    # KL(p_data || p) = sum p_data log p_data - mean log p
    p_data = np.array([0.25, 0.5, 0.25])
    assert marbm.kl_divergence(small_rbm, data) == pytest.approx((p_data * np.log(p_data)).sum() - mll, abs=1e-9)
    with pytest.raises(marbm.RuntimeFailure):
        marbm.log_partition_exact(marbm.Rbm(30, 30), max_units=10)


def test_save_load_round_trip(tmp_path, small_rbm):
    path = str(tmp_path / "m.safetensors")
    marbm.save(path, small_rbm, {"note": "python"})
    assert marbm.load(path) == small_rbm
    model, metadata = marbm.load(path, with_metadata=True)
    assert model == small_rbm and metadata["note"] == "python"
    assert metadata["n_visible"] == "5"


def test_errors_are_python_exceptions_with_the_library_line(tmp_path):
    missing = str(tmp_path / "missing.safetensors")
    with pytest.raises(marbm.DataError) as caught:
        marbm.load(missing)
    message = str(caught.value)
    assert "\n" not in message and "missing.safetensors" in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, marbm.Error)
    # The command line prints the same line after "marbm: error: ".
    cli = os.environ.get("MARBM_CLI")
    if cli:
        run = subprocess.run([cli, "eval", missing], capture_output=True, text=True)
        assert run.returncode == 1
        assert run.stderr.strip() == "marbm: error: " + message
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x03\x00\x00\x00\x00\x00\x00\x00abc")
    with pytest.raises(marbm.DataError, match="bad.safetensors"):
        marbm.load(str(bad))
    with pytest.raises(marbm.UsageError, match="unknown mode solver 'nope'"):
        marbm.find_mode(marbm.Rbm(3, 2), solver="nope")
    with pytest.raises(marbm.UsageError, match="variant: 'x' is not one of discrete|ballistic"):
        marbm.find_mode(marbm.Rbm(3, 2), variant="x")
    if not marbm.cuda_compiled():
        with pytest.raises(marbm.CudaError, match="no CUDA engine") as caught:
            marbm.sample(marbm.Rbm(3, 2), backend="cuda")
        assert isinstance(caught.value, RuntimeError)


def test_ais_brackets_the_exact_value():
    rbm = marbm.Rbm.random(12, 8, sigma=0.5, seed=2)
    exact = marbm.log_partition_exact(rbm)
    result = marbm.ais(rbm, runs=100, intervals=2000, burn_in=200, seed=1)
    assert result["runs"] == 100 and result["intervals"] == 2000
    assert result["log_weights"].shape == (100,)
    assert result["log_z_low"] <= exact <= result["log_z_high"]
    assert abs(result["log_z"] - exact) < 5 * result["log_z_stderr"] + 0.05
    again = marbm.ais(rbm, runs=100, intervals=2000, burn_in=200, seed=1)
    assert again["log_z"] == result["log_z"]
    forward_only = marbm.ais(rbm, runs=10, intervals=100, reverse=False)
    assert "log_z_reverse" not in forward_only


@pytest.mark.parametrize("solver", ["exhaustive", "sb", "sa", "local"])
def test_find_mode_reaches_the_ground_state(small_rbm, solver):
    v, h = all_states(5), all_states(4)
    energies = np.array([[small_rbm.energy(x, y) for y in h] for x in v])
    result = marbm.find_mode(small_rbm, solver=solver, seed=1)
    assert result["visible"].dtype == np.uint8 and result["visible"].shape == (5,)
    assert result["energy"] == pytest.approx(energies.min(), abs=1e-9)
    assert result["energy"] == pytest.approx(small_rbm.energy(result["visible"], result["hidden"]), abs=1e-12)
    assert result["solver"] == solver


def test_find_mode_keeps_minima_and_warm_start(small_rbm):
    result = marbm.find_mode(small_rbm, solver="local", keep_minima=3, start_visible=all_states(5)[:8])
    assert result["minima_visible"].shape[1] == 5
    assert list(result["minima_energy"]) == sorted(result["minima_energy"])
    with pytest.raises(marbm.UsageError, match="warm_visible and warm_hidden"):
        marbm.find_mode(small_rbm, warm_visible=np.zeros(5, np.uint8))


def test_sample_matches_the_exact_distribution():
    rbm = marbm.Rbm.random(3, 2, sigma=1.0, seed=5)
    chains = 4000
    final = marbm.sample(rbm, chains=chains, steps=30, seed=9)
    assert final.shape == (chains, 3) and final.dtype == np.uint8
    states = all_states(3)
    p = np.exp(marbm.log_probability(rbm, states))
    counts = np.array([(final == s).all(1).sum() for s in states])
    # Independent chains, each well mixed after 30 sweeps of a 3x2 model:
    # multinomial counts within 5 standard deviations of chains * p.
    assert np.all(np.abs(counts - chains * p) <= 5 * np.sqrt(chains * p * (1 - p)) + 1)
    snaps = marbm.sample(rbm, chains=4, steps=10, snapshots=5, seed=9)
    assert snaps.shape == (4, 5, 3)
    np.testing.assert_array_equal(marbm.sample(rbm, chains=4, steps=10, seed=9), marbm.sample(rbm, chains=4, steps=10, seed=9))
    start = np.array([[1, 0, 1], [0, 1, 1]], np.uint8)
    assert marbm.sample(rbm, chains=2, steps=1, from_data=start).shape == (2, 3)
    with pytest.raises(marbm.DataError, match="4 values but the model has 3"):
        marbm.sample(rbm, chains=2, steps=1, from_data=np.zeros((2, 4), np.uint8))
    with pytest.raises(marbm.UsageError, match="snapshots 5 is more than steps 2"):
        marbm.sample(rbm, steps=2, snapshots=5)


def test_version_and_cuda_queries():
    assert marbm.version() == marbm.__version__ and marbm.version()
    assert isinstance(marbm.cuda_compiled(), bool)
    devices = marbm.cuda_devices()
    assert isinstance(devices, list)
    if not marbm.cuda_compiled():
        assert devices == []


def test_write_tiles_png(tmp_path):
    tiles = np.zeros((6, 4, 3), np.float32)
    tiles[:, 0, :] = 1.0
    path = tmp_path / "tiles.png"
    marbm.write_tiles_png(str(path), tiles, columns=3, border=1)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR: width = 3 columns x (3 + 1) + 1, height = 2 rows x (4 + 1) + 1
    assert int.from_bytes(data[16:20], "big") == 13 and int.from_bytes(data[20:24], "big") == 11
    with pytest.raises(marbm.UsageError, match="3-dimensional"):
        marbm.write_tiles_png(str(path), np.zeros((4, 3)))
