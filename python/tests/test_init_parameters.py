"""train(init=...) with parameter arrays, and TrainResult.parameters(), on the CPU: a dict of
arrays starts the same run as the same parameters as an Rbm, bit for bit; parameters() is a
view of the result's model; bad dicts are refused in one line. Parameters labelled as CUDA
memory (a DLPack capsule whose device field says CUDA, over host memory that is never read)
reach the checks the CUDA path makes before any device is touched. The CUDA engine's own path
is in test_cuda_tensors.py (skipped without a device)."""

import ctypes
import gc

import numpy as np
import pytest

import marbm

BARS = "shifting-bars:6:3"
SETTINGS = dict(iters=150, batch=4, lr=0.2, seed=3, momentum=0.5, eval_every=50)


def arrays_of(rbm):
    return {"weights": rbm.weights.copy(), "visible_bias": rbm.visible_bias.copy(), "hidden_bias": rbm.hidden_bias.copy()}


@pytest.mark.parametrize("method", ["cd", "pcd", "mode"])
def test_a_dict_of_arrays_starts_the_run_of_the_same_rbm(method):
    start = marbm.Rbm.random(6, 4, sigma=0.3, seed=5)
    expected = marbm.train(BARS, init=start, method=method, **SETTINGS)
    same = marbm.train(BARS, init=arrays_of(start), method=method, **SETTINGS)
    assert same.model == expected.model
    np.testing.assert_array_equal(same.history["kl"], expected.history["kl"])
    # float64 and strided arrays are converted once, as Rbm.from_arrays does.
    wide = np.zeros((6, 8), np.float64)
    wide[:, ::2] = start.weights
    strided = {"weights": wide[:, ::2], "visible_bias": start.visible_bias.astype(np.float64),
               "hidden_bias": np.repeat(start.hidden_bias, 2)[::2]}
    assert marbm.train(BARS, init=strided, method=method, **SETTINGS).model == expected.model


def test_parameters_on_the_cpu_are_views_of_the_model():
    result = marbm.train(BARS, hidden=4, iters=50, batch=4, seed=1)
    params = result.parameters()
    assert set(params) == {"weights", "visible_bias", "hidden_bias"}
    model = result.model
    for name in params:
        assert params[name].dtype == np.float32
        assert params[name].ctypes.data == model._address(name)
        np.testing.assert_array_equal(params[name], getattr(model, name))
    assert params["weights"].shape == (6, 4)
    with pytest.raises(marbm.UsageError, match="holds no engine"):
        result._engine_address("weights")
    # The arrays keep the result (and its model) alive.
    expected = params["weights"].copy()
    del result, model
    gc.collect()
    np.testing.assert_array_equal(params["weights"], expected)


def test_bad_init_dicts_are_refused_in_one_line():
    start = marbm.Rbm.random(6, 4, sigma=0.3, seed=5)
    good = arrays_of(start)
    cases = [
        (dict(good, extra=good["weights"]), marbm.UsageError, "^init: unknown key 'extra'"),
        ({"weights": good["weights"], "visible_bias": good["visible_bias"]}, marbm.UsageError,
         "^init: the dict has no hidden_bias$"),
        (dict(good, visible_bias="abc"), marbm.UsageError, "^init: visible_bias is not an array"),
        (dict(good, hidden_bias=np.zeros(5, np.float32)), marbm.UsageError,
         r"^init: weights \(6, 4\) need visible_bias \(6,\) and hidden_bias \(4,\), got \(6,\) and \(5,\)$"),
        (dict(good, weights=good["weights"].ravel()), marbm.UsageError, "^init: expected weights of 2 dimensions"),
        ({"weights": np.zeros((5, 4), np.float32), "visible_bias": np.zeros(5, np.float32),
          "hidden_bias": np.zeros(4, np.float32)}, marbm.DataError,
         "^init: the model has 5 visible units but the data has 6 columns$"),
        ([good["weights"], good["visible_bias"], good["hidden_bias"]], marbm.UsageError,
         "^init: expected an Rbm or a dict of the arrays weights, visible_bias and hidden_bias$"),
    ]
    for init, error, pattern in cases:
        with pytest.raises(error, match=pattern) as caught:
            marbm.train(BARS, init=init, iters=1)
        assert "\n" not in str(caught.value)
    with pytest.raises(marbm.UsageError, match="^hidden=3 differs from the 4 hidden units of init$"):
        marbm.train(BARS, init=good, hidden=3, iters=1)


def labelled_cuda(array, device=0):
    """A DLPack capsule of a host numpy array whose device field says CUDA device `device`. Only
    for refusals: marbm must refuse it before reading the memory."""
    capsule = array.__dlpack__()
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    tensor = get(capsule, b"dltensor")
    # DLTensor: void* data, then DLDevice {int32 device_type, int32 device_id}; kDLCUDA is 2.
    ctypes.c_int32.from_address(tensor + 8).value = 2
    ctypes.c_int32.from_address(tensor + 12).value = device
    return capsule


def cuda_labelled_init(weights=None, visible=None, hidden=None, device=0):
    w = np.zeros((6, 4), np.float32) if weights is None else weights
    a = np.zeros(6, np.float32) if visible is None else visible
    b = np.zeros(4, np.float32) if hidden is None else hidden
    keep = (w, a, b)  # the memory under the capsules
    init = {"weights": labelled_cuda(w, device), "visible_bias": labelled_cuda(a, device),
            "hidden_bias": labelled_cuda(b, device)}
    return init, keep


def test_cuda_parameters_are_checked_before_any_device_is_touched():
    cases = [
        (dict(visible=np.zeros(6, np.float64)), "^init: visible_bias on a CUDA device must be float32 \\(tensor.float\\(\\)\\)$"),
        (dict(weights=np.zeros((4, 6), np.float32).T), r"^init: weights on a CUDA device need contiguous columns"),
        (dict(hidden=np.zeros(5, np.float32)), r"^init: weights \(6, 4\) need visible_bias"),
    ]
    for arrays, pattern in cases:
        init, keep = cuda_labelled_init(**arrays)
        with pytest.raises(marbm.UsageError, match=pattern) as caught:
            marbm.train(BARS, init=init, iters=1, backend="cuda")
        assert "\n" not in str(caught.value)
    # One array on the host, two "on the device".
    init, keep = cuda_labelled_init()
    init["visible_bias"] = np.zeros(6, np.float32)
    with pytest.raises(marbm.UsageError, match="^init: weights are on CUDA device 0 but visible_bias is on the CPU; "
                                               "give all three on one device$"):
        marbm.train(BARS, init=init, iters=1, backend="cuda")
    init, keep = cuda_labelled_init()
    init["hidden_bias"] = labelled_cuda(keep[2], 1)
    with pytest.raises(marbm.UsageError, match="^init: weights are on CUDA device 0 but hidden_bias is on CUDA "
                                               "device 1; give all three on one device$"):
        marbm.train(BARS, init=init, iters=1, backend="cuda")


def test_well_formed_cuda_parameters_go_to_the_cuda_engine_or_are_refused():
    init, keep = cuda_labelled_init()
    if not marbm.cuda_compiled():
        with pytest.raises(marbm.UsageError, match="^init: the arrays are on a CUDA device, but this marbm has no "
                                                   "CUDA engine"):
            marbm.train(BARS, init=init, iters=1, backend="cuda")
        return
    with pytest.raises(marbm.UsageError, match="^init: the arrays are on CUDA device 0; train with backend='cuda', "
                                               "which takes them without a host copy, or pass CPU arrays$"):
        marbm.train(BARS, init=init, iters=1, backend="cpu")
    if not marbm.cuda_devices():
        init, keep = cuda_labelled_init()
        with pytest.raises(marbm.CudaError, match="no usable CUDA device"):
            marbm.train(BARS, init=init, iters=1, backend="cuda")
    # Rows labelled as on CUDA device 0, parameters on device 1: refused before either is read.
    rows = np.array([[0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 1, 0]], np.uint8)
    init, keep = cuda_labelled_init(device=1)
    with pytest.raises(marbm.UsageError, match="^init: the arrays are on CUDA device 1 but the data on CUDA device 0; "
                                               "give both on the device to train on$"):
        marbm.train(labelled_cuda(rows, 0), init=init, iters=1, backend="cuda", init_visible_bias="random")
