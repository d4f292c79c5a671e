"""Arrays that say they are in CUDA device memory, without a device: a DLPack capsule of a numpy
array whose device field is rewritten to CUDA (never dereferenced, as marbm must not read device
memory on the host). Where marbm has no CUDA engine, training data on a device is refused in one
line; states and parameters on a device are refused in any build."""

import ctypes

import numpy as np
import pytest

import marbm

K_DL_CUDA = 2


class PretendCuda:
    """Offers a numpy array through DLPack as if it lived on CUDA device `device`."""

    def __init__(self, array, device=0):
        self.array = np.ascontiguousarray(array)
        self.device = device

    def __dlpack__(self, **kwargs):
        capsule = self.array.__dlpack__()  # the unversioned DLManagedTensor, "dltensor"
        get = ctypes.pythonapi.PyCapsule_GetPointer
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
        tensor = get(capsule, b"dltensor")
        # DLTensor { void* data; DLDevice { int32 device_type; int32 device_id; } ... } comes first.
        ctypes.c_int32.from_address(tensor + ctypes.sizeof(ctypes.c_void_p)).value = K_DL_CUDA
        ctypes.c_int32.from_address(tensor + ctypes.sizeof(ctypes.c_void_p) + 4).value = self.device
        return capsule

    def __dlpack_device__(self):
        return (K_DL_CUDA, self.device)


ROWS = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]], np.uint8)


def refused(call):
    with pytest.raises(marbm.UsageError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_states_and_parameters_on_a_device_are_refused():
    rbm = marbm.Rbm(4, 2)
    assert refused(lambda: rbm.free_energy(PretendCuda(ROWS))).startswith("visible: the array is on a CUDA device")
    assert refused(lambda: marbm.Rbm.from_arrays(PretendCuda(np.zeros((4, 2), np.float32)), np.zeros(4),
                                                 np.zeros(2))).startswith("weights: the array is on a CUDA device")


@pytest.mark.skipif(marbm.cuda_compiled(), reason="this build has the CUDA engine")
def test_training_rows_on_a_device_without_a_cuda_engine_are_refused():
    message = refused(lambda: marbm.train(PretendCuda(ROWS), hidden=2, iters=1, backend="cuda"))
    assert message == ("data: the array is on a CUDA device, but this marbm has no CUDA engine (built without "
                       "nvcc); pass a CPU array")


@pytest.mark.skipif(not marbm.cuda_compiled() or bool(marbm.cuda_devices()),
                    reason="needs the CUDA engine compiled and no usable device")
def test_training_rows_on_a_device_need_the_cuda_backend():
    message = refused(lambda: marbm.train(PretendCuda(ROWS, device=0), hidden=2, iters=1, backend="cpu",
                                          init_visible_bias="random"))
    assert message.startswith("data: the array is on CUDA device 0; train with backend='cuda'")
    assert "uint8 or bool" in refused(lambda: marbm.train(PretendCuda(ROWS.astype(np.float32)), hidden=2, iters=1,
                                                          backend="cuda", init_visible_bias="random"))
