"""CUDA tensors (PyTorch). They are refused, with a one-line UsageError naming the argument: the
engines take host data and copy it to the device themselves, and a path that hands a tensor on
the CUDA engine's device to the engine without a host round trip does not exist yet. Skipped
without torch or a CUDA device for torch (never run so far: no device)."""

import os

import pytest

import marbm

if os.environ.get("MARBM_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/python-torch-tests.sh runs these)")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def test_cuda_tensors_are_refused_in_one_line():
    rows = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]], dtype=torch.uint8, device="cuda")
    rbm = marbm.Rbm(4, 2)
    cases = [
        (lambda: marbm.train(rows, hidden=2, iters=1), "data"),
        (lambda: rbm.free_energy(rows), "visible"),
        (lambda: marbm.Rbm.from_arrays(torch.zeros(4, 2, device="cuda"), torch.zeros(4), torch.zeros(2)), "weights"),
    ]
    for call, name in cases:
        with pytest.raises(marbm.UsageError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(name + ": the array is on a CUDA device") and "\n" not in message
    # The CPU copy of the same tensor is accepted.
    assert marbm.train(rows.cpu(), hidden=2, iters=1).model.n_visible == 4
