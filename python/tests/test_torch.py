"""PyTorch tensors through DLPack (CPU). Skipped when torch is not installed.

CUDA tensors are refused with a UsageError: marbm's engines take host data and
copy it to the device themselves."""

import numpy as np
import pytest

import marbm

torch = pytest.importorskip("torch")


def test_parameter_views_are_shared_with_torch():
    rbm = marbm.Rbm.random(5, 3, sigma=0.1, seed=1)
    weights = torch.from_dlpack(rbm.weights)
    assert weights.data_ptr() == rbm._address("weights")
    weights[0, 0] = 7.0
    assert rbm.weights[0, 0] == np.float32(7.0)


def test_cpu_tensors_are_accepted_as_data_and_states():
    data = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], dtype=torch.uint8)
    a = marbm.train(data, hidden=2, iters=20, batch=3, seed=1)
    b = marbm.train(data.numpy(), hidden=2, iters=20, batch=3, seed=1)
    assert a.model == b.model
    np.testing.assert_allclose(a.model.free_energy(data.float()), a.model.free_energy(data.numpy()))
