"""PyTorch CUDA tensors. As training data on the CUDA engine's device they are taken where they
are, copied device to device (train(backend='cuda')); so are float32 parameters given as
train(init={...}), and TrainResult.parameters() hands out the CUDA engine's own parameter
memory; anywhere else they are refused with a one-line UsageError naming the argument. Skipped without torch or a CUDA device for torch: never
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


# Model parameters as CUDA tensors: init= takes them device to device into the CUDA engine,
# TrainResult.parameters() hands out the engine's own device memory.

def cuda_parameters(rbm, wide=False):
    """The parameters of `rbm` as float32 CUDA tensors; wide=True: W a column slice of a wider
    tensor (row stride m + 3) and the biases every other element of longer tensors."""
    w = torch.from_numpy(rbm.weights.copy()).cuda()
    a = torch.from_numpy(rbm.visible_bias.copy()).cuda()
    b = torch.from_numpy(rbm.hidden_bias.copy()).cuda()
    if not wide:
        return {"weights": w, "visible_bias": a, "hidden_bias": b}
    n, m = w.shape
    big = torch.full((n, m + 3), float("nan"), device="cuda")
    big[:, :m] = w
    a2 = torch.full((2 * n,), float("nan"), device="cuda")
    a2[::2] = a
    b2 = torch.full((2 * m,), float("nan"), device="cuda")
    b2[::2] = b
    return {"weights": big[:, :m], "visible_bias": a2[::2], "hidden_bias": b2[::2]}


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
@pytest.mark.parametrize("method", ["cd", "pcd", "mode"])
def test_cuda_parameters_start_the_run_of_the_host_model_bit_for_bit(method):
    settings = dict(iters=200, batch=3, lr=0.2, seed=2, backend="cuda", method=method, eval_every=50)
    start = marbm.Rbm.random(6, 4, sigma=0.3, seed=8)
    expected = marbm.train(BARS, init=start, **settings)
    for wide in (False, True):
        init = cuda_parameters(start, wide)
        before = {name: t.clone() for name, t in init.items()}
        result = marbm.train(BARS, init=init, **settings)
        assert result.model == expected.model
        np.testing.assert_array_equal(result.history["kl"], expected.history["kl"])
        for name in init:
            assert torch.equal(init[name], before[name])  # read, never written
    # CUDA rows and CUDA parameters together: nothing through the host. (Against the same CUDA
    # rows from a host model: the mode search starts from no data rows when they are on a device.)
    rows = torch.tensor(BARS, device="cuda")
    assert (marbm.train(rows, init=cuda_parameters(start), **settings).model ==
            marbm.train(rows, init=start, **settings).model)


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
def test_trained_parameters_are_the_cuda_engines_memory():
    result = marbm.train(BARS, hidden=4, iters=100, batch=3, seed=1, backend="cuda", init_visible_bias="random")
    params = result.parameters()
    tensors = {name: torch.from_dlpack(params[name]) for name in ("weights", "visible_bias", "hidden_bias")}
    for name, tensor in tensors.items():
        assert tensor.device.type == "cuda" and tensor.dtype == torch.float32
        assert tensor.data_ptr() == result._engine_address(name)  # zero copy: the engine's memory
        np.testing.assert_array_equal(tensor.cpu().numpy(), getattr(result.model, name))
    assert tuple(tensors["weights"].shape) == (6, 4)
    assert tensors["visible_bias"].data_ptr() == tensors["weights"].data_ptr() + 4 * 6 * 4  # [W | a | b]
    # A second call hands out the same memory; a write shows in it.
    again = torch.from_dlpack(result.parameters()["hidden_bias"])
    assert again.data_ptr() == tensors["hidden_bias"].data_ptr()
    tensors["hidden_bias"][0] = 5.0
    assert again[0].item() == 5.0
    # The tensors keep the engine alive after the result is gone.
    expected = tensors["weights"].clone()
    del result, params, again
    import gc
    gc.collect()
    torch.cuda.synchronize()
    assert torch.equal(tensors["weights"], expected)


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
def test_trained_cuda_parameters_continue_a_run_as_the_host_model():
    settings = dict(iters=100, batch=3, lr=0.2, seed=4, backend="cuda")
    first = marbm.train(BARS, hidden=4, init_visible_bias="random", **settings)
    on_device = {name: torch.from_dlpack(t) for name, t in first.parameters().items()}
    assert (marbm.train(BARS, init=on_device, **settings).model ==
            marbm.train(BARS, init=first.model, **settings).model)


@pytest.mark.skipif(not marbm.cuda_devices(), reason="marbm has no CUDA engine or sees no device")
def test_bad_cuda_parameters_are_refused_in_one_line():
    start = marbm.Rbm.random(6, 4, sigma=0.3, seed=8)
    good = cuda_parameters(start)
    cases = [
        (dict(good, weights=good["weights"].double()), "^init: weights on a CUDA device must be float32"),
        (dict(good, weights=good["weights"].t().contiguous().t()), "^init: weights on a CUDA device need contiguous columns"),
        (dict(good, visible_bias=good["visible_bias"].cpu()), "^init: weights are on CUDA device 0 but visible_bias is on the CPU"),
        (dict(good, hidden_bias=good["hidden_bias"][:3]), r"^init: weights \(6, 4\) need visible_bias"),
    ]
    for init, pattern in cases:
        with pytest.raises(marbm.UsageError, match=pattern) as caught:
            marbm.train(BARS, init=init, iters=1, backend="cuda")
        assert "\n" not in str(caught.value)
    with pytest.raises(marbm.UsageError, match="^init: the arrays are on CUDA device 0; train with backend='cuda'"):
        marbm.train(BARS, init=good, iters=1, backend="cpu")
    with pytest.raises(marbm.DataError, match="^train: initial model: weights\\[0\\] is not finite$"):
        marbm.train(BARS, init=dict(good, weights=torch.full((6, 4), float("inf"), device="cuda")), iters=1,
                    backend="cuda")
