"""marbm: restricted Boltzmann machines with mode-assisted training.

The functions and classes here are the C++ library's (module ``marbm._marbm``);
``marbm.BernoulliRBM`` is a scikit-learn estimator over them.
"""

from ._marbm import (
    CudaError,
    DataError,
    Error,
    Rbm,
    RuntimeFailure,
    TrainingDiverged,
    TrainResult,
    UsageError,
    ais,
    cuda_compiled,
    cuda_devices,
    find_mode,
    kl_divergence,
    load,
    log_partition_exact,
    log_probability,
    mean_log_likelihood,
    sample,
    save,
    study,
    train,
    version,
    write_tiles_png,
)

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sklearn import BernoulliRBM

__version__ = version()

__all__ = [
    "BernoulliRBM",
    "CudaError",
    "DataError",
    "Error",
    "Rbm",
    "RuntimeFailure",
    "TrainingDiverged",
    "TrainResult",
    "UsageError",
    "ais",
    "cuda_compiled",
    "cuda_devices",
    "find_mode",
    "kl_divergence",
    "load",
    "log_partition_exact",
    "log_probability",
    "mean_log_likelihood",
    "sample",
    "save",
    "study",
    "train",
    "version",
    "write_tiles_png",
]


def __getattr__(name):
    # scikit-learn is imported only when the estimator is asked for.
    if name == "BernoulliRBM":
        from .sklearn import BernoulliRBM

        return BernoulliRBM
    raise AttributeError(f"module 'marbm' has no attribute {name!r}")
