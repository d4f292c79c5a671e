"""PyTorch CUDA tensors. As training data on the CUDA engine's device they are taken where they
are, copied device to device (train(backend='cuda')); anywhere else they are refused with a
one-line UsageError naming the argument. Skipped without torch or a CUDA device for torch: never
run so far (no device), listed in bench/results/device-pending.md."""

import os

import numpy as np
import pytest

import marbm

if os.environ.get("MARBM_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (scripts/python-torch-tests.sh runs these)")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")

BARS = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 0, 0],
                 [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 1]], np.uint8)


def test_cuda_tensors_elsewhere_are_refused_in_one_line():
    rows = torch.tensor(BARS, device="cuda")
    rbm = marbm.Rbm(6, 2)
    cases = [
        (lambda: marbm.train(rows, hidden=2, iters=1, backend="cpu", init_visible_bias="random"), "data"),
        (lambda: rbm.free_energy(rows), "visible"),
        (lambda: marbm.Rbm.from_arrays(torch.zeros(6, 2, device="cuda"), torch.zeros(6), torch.zeros(2)), "weights"),
    ]
    for call, name in cases:
        with pytest.raises(marbm.UsageError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(name + ": the array is on ") and "CUDA device" in message and "\n" not in message


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
def test_cuda_rows_train_on_the_cuda_engine_without_a_host_copy():
    settings = dict(hidden=4, iters=200, batch=3, lr=0.2, seed=2, backend="cuda", init_visible_bias="random")
    on_device = torch.tensor(BARS, device="cuda")
    before = on_device.clone()
    a = marbm.train(on_device, **settings)
    b = marbm.train(BARS, **settings)  # the same rows from the host, to the same engine
    assert a.model == b.model
    assert torch.equal(on_device, before)
    # What needs the rows on the host is left out; log Z is the engine's.
    assert np.isnan(a.history["kl"][-1]) and a.history["log_z"][-1] == b.history["log_z"][-1]
    assert a.summary["data"] == "cuda array 6x6"
    # A column slice of a wider tensor (row stride 9) and bool rows.
    wide = torch.zeros((6, 9), dtype=torch.uint8, device="cuda")
    wide[:, :6] = on_device
    wide[:, 6:] = 7  # never read
    assert marbm.train(wide[:, :6], **settings).model == b.model
    assert marbm.train(on_device.bool(), **settings).model == b.model


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
def test_bad_cuda_rows_are_refused_in_one_line():
    settings = dict(hidden=2, iters=1, backend="cuda", init_visible_bias="random")
    bad = torch.tensor(BARS, device="cuda")
    bad[3, 1] = 5
    with pytest.raises(marbm.DataError, match="^resident data: row 3, column 1 is 5; the values must be 0 or 1$"):
        marbm.train(bad, **settings)
    with pytest.raises(marbm.UsageError, match="must be uint8 or bool with contiguous columns"):
        marbm.train(torch.tensor(BARS, device="cuda").float(), **settings)
    with pytest.raises(marbm.UsageError, match="must be uint8 or bool with contiguous columns"):
        marbm.train(torch.tensor(BARS, device="cuda").t(), **settings)
    with pytest.raises(marbm.UsageError, match="init_visible_bias='data' reads the rows on the host"):
        marbm.train(torch.tensor(BARS, device="cuda"), hidden=2, iters=1, backend="cuda")
    with pytest.raises(marbm.UsageError, match="^test_data: "):
        marbm.train(torch.tensor(BARS, device="cuda"), test_data=BARS, **settings)
