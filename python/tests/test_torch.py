"""PyTorch tensors through DLPack. Skipped when torch is not installed (CI has no torch); to run
them, see the README's Python section.

CPU tensors go in and out without copies where the layout allows: the model's parameters are
tensors over the library's memory, and contiguous uint8 or bool rows are read in place. CUDA
tensors are refused (test_cuda_tensors.py)."""

import os

import numpy as np
import pytest

import marbm
from marbm import _marbm

if os.environ.get("MARBM_REQUIRE_TORCH") == "1":
    import torch  # scripts/python-torch-tests.sh: a missing torch fails
else:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/python-torch-tests.sh runs these)")

BARS = "shifting-bars:6:3"


def test_parameter_views_are_shared_with_torch():
    rbm = marbm.Rbm.random(5, 3, sigma=0.1, seed=1)
    for name in ("weights", "visible_bias", "hidden_bias"):
        tensor = torch.from_dlpack(getattr(rbm, name))
        assert tensor.data_ptr() == rbm._address(name)
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    weights = torch.from_dlpack(rbm.weights)
    assert tuple(weights.shape) == (5, 3)
    weights[0, 0] = 7.0
    assert rbm.weights[0, 0] == np.float32(7.0)
    # Torch's in-place operations act on the model itself.
    torch.from_dlpack(rbm.hidden_bias).fill_(0.25)
    np.testing.assert_array_equal(rbm.hidden_bias, np.full(3, 0.25, np.float32))
    # F(0) = -sum_j softplus(b_j): the model computes with the values torch wrote.
    assert rbm.free_energy(np.zeros(5, np.uint8)) == pytest.approx(-3 * np.log1p(np.exp(0.25)), abs=1e-6)


def test_contiguous_byte_tensors_are_read_in_place():
    rows = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.uint8)
    assert _marbm._read_address(rows) == rows.data_ptr()
    as_bool = rows.bool()
    assert _marbm._read_address(as_bool) == as_bool.data_ptr()
    # Other dtypes and strided views are converted (checked) instead.
    as_float = rows.float()
    assert _marbm._read_address(as_float) != as_float.data_ptr()
    columns = rows.t()
    assert not columns.is_contiguous() and _marbm._read_address(columns) != columns.data_ptr()


def test_torch_results_equal_numpy_results_for_every_layout():
    rbm = marbm.Rbm.random(4, 3, sigma=0.7, seed=9)
    rows = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], np.uint8)
    expected = rbm.free_energy(rows)
    for tensor in (torch.from_numpy(rows), torch.from_numpy(rows).bool(), torch.from_numpy(rows).double(),
                   torch.from_numpy(rows.T.copy()).t(), torch.from_numpy(rows).to(torch.int64)):
        np.testing.assert_array_equal(rbm.free_energy(tensor), expected)
    np.testing.assert_array_equal(rbm.hidden_probabilities(torch.from_numpy(rows)), rbm.hidden_probabilities(rows))
    np.testing.assert_array_equal(marbm.log_probability(rbm, torch.from_numpy(rows)), marbm.log_probability(rbm, rows))


def test_training_on_a_torch_tensor_equals_training_on_numpy():
    data = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.uint8)
    a = marbm.train(data, hidden=2, iters=20, batch=3, seed=1)
    b = marbm.train(data.numpy(), hidden=2, iters=20, batch=3, seed=1)
    c = marbm.train(data.float(), hidden=2, iters=20, batch=3, seed=1, test_data=data.bool())
    assert a.model == b.model == c.model
    np.testing.assert_allclose(a.model.free_energy(data.float()), a.model.free_energy(data.numpy()))
    # The trained model's parameters come back to torch without a copy.
    weights = torch.from_dlpack(a.model.weights)
    assert weights.data_ptr() == a.model._address("weights")
    # Rbm.from_arrays takes tensors (copied into the model, converted to float32).
    copy = marbm.Rbm.from_arrays(torch.from_dlpack(a.model.weights).double(), torch.from_dlpack(a.model.visible_bias),
                                 torch.from_dlpack(a.model.hidden_bias))
    assert copy == a.model
    # The scikit-learn estimator takes tensors too.
    estimator = marbm.BernoulliRBM(n_components=2, n_iter=3, batch_size=3, random_state=0).fit(data)
    assert estimator.transform(data).shape == (3, 2)


def test_bad_tensors_raise_one_line_errors():
    rbm = marbm.Rbm(4, 2)
    bad = torch.tensor([[0, 1, 2, 0]], dtype=torch.uint8)
    with pytest.raises(marbm.DataError, match="visible: row 0, column 2 is 2; the values must be 0 or 1"):
        rbm.free_energy(bad)
    with pytest.raises(marbm.DataError, match="data: row 0, column 1 is 0.5"):
        marbm.train(torch.tensor([[0.0, 0.5], [1.0, 0.0]]), hidden=2, iters=1)
    with pytest.raises(marbm.UsageError, match="expected a 1- or 2-dimensional array, got 3 dimensions"):
        rbm.free_energy(torch.zeros((2, 2, 4), dtype=torch.uint8))
    with pytest.raises(marbm.UsageError, match="visible: rows have 3 values but the model has 4 visible units"):
        rbm.free_energy(torch.zeros((2, 3), dtype=torch.uint8))
    with pytest.raises(marbm.UsageError, match="dtype is not a real number or boolean type"):
        rbm.free_energy(torch.zeros((2, 4), dtype=torch.complex64))
    with pytest.raises(marbm.UsageError, match=r"visible_bias: expected shape \(4,\), got \(2,\)"):
        marbm.Rbm.from_arrays(torch.zeros(4, 2), torch.zeros(2), torch.zeros(2))


def test_torch_cpu_parameters_as_init_and_out():
    start = marbm.Rbm.random(6, 4, sigma=0.3, seed=5)
    settings = dict(iters=100, batch=4, lr=0.2, seed=3)
    expected = marbm.train(BARS, init=start, **settings)
    init = {name: torch.from_dlpack(getattr(start, name)).clone() for name in ("weights", "visible_bias", "hidden_bias")}
    result = marbm.train(BARS, init=init, **settings)
    assert result.model == expected.model
    # On the cpu backend parameters() are views of the result's model; torch shares them.
    for name, array in result.parameters().items():
        tensor = torch.from_dlpack(array)
        assert tensor.data_ptr() == result.model._address(name)
    # A float64 tensor with strides is converted once, as Rbm.from_arrays does.
    wide = torch.zeros((6, 8), dtype=torch.float64)
    wide[:, ::2] = init["weights"].double()
    assert marbm.train(BARS, init=dict(init, weights=wide[:, ::2]), **settings).model == expected.model
