"""Type hints and documentation of marbm._marbm, the C++ library's bindings.

Arrays go in as anything that speaks the buffer protocol or DLPack (numpy
arrays, PyTorch CPU tensors); states are 0/1 values of any real or boolean
dtype. Contiguous uint8 or bool states are read in place; other layouts are
converted once. Arrays that come out are numpy arrays; torch.from_dlpack()
shares their memory. (TrainResult.parameters() on the cuda backend: DLPack
arrays of the CUDA engine's device memory.)
"""

from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

Backend = Literal["cpu", "cuda", "auto"]
Method = Literal["cd", "pcd", "exact", "mode"]
Solver = Literal["exhaustive", "sb", "sa", "local"]
DataSource = Union[str, npt.ArrayLike]

class Error(Exception):
    """Base of every error marbm raises; str() is the library's one-line message."""

class UsageError(Error, ValueError):
    """A bad argument or setting (the command line's exit status 2)."""

class DataError(Error, ValueError):
    """Bad input data or model file: missing file, wrong sizes, values other than 0 and 1, NaN parameters."""

class CudaError(Error, RuntimeError):
    """A CUDA failure, or no usable CUDA device when backend='cuda' was asked for."""

class RuntimeFailure(Error, RuntimeError):
    """A run that cannot go on (a size beyond a limit, not enough memory)."""

class TrainingDiverged(RuntimeFailure):
    """Training stopped because the parameters became NaN or infinite."""

    noticed_at: int
    """Updates done when the non-finite parameters were found."""
    last_finite_iteration: int
    """Updates done when the parameters were last found finite."""
    last_finite_model: Rbm
    """The parameters then."""
    history: dict[str, np.ndarray]
    """The evaluations before the divergence, as in TrainResult.history."""

class Rbm:
    """A binary restricted Boltzmann machine, E(v, h) = -a.v - b.h - v^T W h.

    ``weights`` (n_visible x n_hidden), ``visible_bias`` and ``hidden_bias``
    are float32 numpy views of the model's own memory: writing to them changes
    the model, and they keep the model alive.
    """

    def __init__(self, n_visible: int, n_hidden: int) -> None:
        """A model with every parameter zero. Raises UsageError unless both sizes are >= 1."""
    @staticmethod
    def random(n_visible: int, n_hidden: int, sigma: float = 0.01, seed: int = 0) -> Rbm:
        """W, a and b drawn from N(0, sigma^2); the same seed and sizes give the same model."""
    @staticmethod
    def from_arrays(weights: npt.ArrayLike, visible_bias: npt.ArrayLike, hidden_bias: npt.ArrayLike) -> Rbm:
        """A model holding float32 copies of these parameters (shapes (n, m), (n,), (m,))."""
    @property
    def n_visible(self) -> int: ...
    @property
    def n_hidden(self) -> int: ...
    @property
    def weights(self) -> npt.NDArray[np.float32]:
        """W, shape (n_visible, n_hidden), a writable view of the model (no copy)."""
    @property
    def visible_bias(self) -> npt.NDArray[np.float32]:
        """a, shape (n_visible,), a writable view of the model (no copy)."""
    @property
    def hidden_bias(self) -> npt.NDArray[np.float32]:
        """b, shape (n_hidden,), a writable view of the model (no copy)."""
    def _address(self, which: Literal["weights", "visible_bias", "hidden_bias"]) -> int:
        """Address of a parameter's memory inside the library (tests of the zero-copy views)."""
    def energy(self, visible: npt.ArrayLike, hidden: npt.ArrayLike) -> Union[float, npt.NDArray[np.float64]]:
        """E(v, h) in float64: a float for one state (1-D), an array for rows of states (2-D)."""
    def free_energy(self, visible: npt.ArrayLike) -> Union[float, npt.NDArray[np.float64]]:
        """F(v) = -a.v - sum_j softplus(b_j + (W^T v)_j): a float for one state, an array per row for 2-D input."""
    def hidden_probabilities(self, visible: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """p(h_j = 1 | v): shape (n_hidden,) for one state, (rows, n_hidden) for rows."""
    def visible_probabilities(self, hidden: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """p(v_i = 1 | h): shape (n_visible,) for one state, (rows, n_visible) for rows."""
    def uniform_mean_energy(self) -> float:
        """Mean energy over all states under the uniform distribution."""
    def check_finite(self) -> None:
        """Raises DataError when a parameter is NaN or infinite."""
    def copy(self) -> Rbm:
        """An independent copy."""
    def __copy__(self) -> Rbm: ...
    def __deepcopy__(self, memo: Any) -> Rbm: ...
    def __eq__(self, other: object) -> bool: ...
    def __getstate__(self) -> tuple[int, int, bytes, bytes, bytes]:
        """Pickling: the sizes and the float32 parameters."""
    def __setstate__(self, state: tuple[int, int, bytes, bytes, bytes]) -> None: ...

class TrainResult:
    """What train() returns."""

    @property
    def model(self) -> Rbm:
        """The trained model."""
    @property
    def history(self) -> dict[str, np.ndarray]:
        """One numpy array per quantity, one entry per evaluation (update 0, every eval_every, the last):
        iteration, kl, mean_log_likelihood, log_z (exact when enumerable, else NaN), p_mode, mode_push,
        mode_energy, mode_steps, seconds, hidden_similarity, saturated_hidden and, with test_data,
        test_mean_log_likelihood (+ _low, _high), test_log_z_exact, test_reconstruction_error, free_energy_gap."""
    @property
    def iterations(self) -> int:
        """Updates made."""
    @property
    def mode_steps(self) -> int:
        """Mode steps taken (method 'mode')."""
    @property
    def seconds(self) -> float:
        """Training wall time."""
    @property
    def backend(self) -> str:
        """The engine that trained, in words, e.g. 'cpu (2 threads, OpenBLAS)'."""
    def parameters(self) -> dict[str, Any]:
        """The trained parameters where the engine computed, without a copy: a dict of
        weights (n, m), visible_bias (n,) and hidden_bias (m,), float32. On the cuda backend
        DLPack arrays of the CUDA engine's own device memory (torch.from_dlpack(...) or
        cupy.from_dlpack(...) share it; never through the host); they and this result keep
        the engine, with all its device memory, alive until the last of them is gone.
        Writing into them changes what later calls return. On the cpu backend numpy views
        of model (the host copy this result holds)."""
    def _engine_address(self, which: str) -> int:
        """Address of a parameter in the CUDA engine's memory (tests of zero-copy views)."""
    @property
    def summary(self) -> dict[str, Any]:
        """What `marbm train --json` prints at the end, as a dict with the same keys: out, data,
        method, n_visible, n_hidden, iterations, seconds, kl, rows_distinct, mean_log_likelihood,
        log_z (None where not finite), backend, seed, mode_steps (method 'mode'), with test_data
        the held-out metrics, and with eval_every > 0 event 'summary' and history, the list of
        evaluation objects as --json prints them."""

def load(path: str, with_metadata: bool = False) -> Any:
    """Reads a safetensors model file (float32 or float64 tensors).

    Returns the Rbm, or (Rbm, metadata dict) with with_metadata=True. Raises
    DataError naming the file when it is missing, malformed or non-finite."""

def save(path: str, rbm: Rbm, metadata: Optional[dict[str, str]] = None) -> None:
    """Writes the model as safetensors (float32) with string metadata, atomically."""

def log_partition_exact(rbm: Rbm, max_units: int = 32) -> float:
    """log Z by Gray-code enumeration of the smaller layer. Raises RuntimeFailure when
    2^min(n, m) exceeds 2^max_units."""

def log_probability(
    rbm: Rbm, visible: npt.ArrayLike, log_z: Optional[float] = None, max_units: int = 32
) -> Union[float, npt.NDArray[np.float64]]:
    """log p(v) = -F(v) - log Z, per row for 2-D input; log Z is computed exactly unless given."""

def mean_log_likelihood(rbm: Rbm, data: DataSource, log_z: Optional[float] = None, max_units: int = 32) -> float:
    """Mean log p(v) over the rows of data (an array of 0/1 rows or a data spec such as 'shifting-bars:6:3')."""

def kl_divergence(rbm: Rbm, data: DataSource, max_units: int = 32) -> float:
    """KL(p_data || p_model), exact, with p_data uniform over the rows of data."""

def ais(
    rbm: Rbm,
    data: Optional[DataSource] = None,
    runs: int = 100,
    intervals: int = 14500,
    reverse: bool = True,
    burn_in: int = 1000,
    seed: int = 0,
    threads: int = 0,
    betas: Optional[Sequence[float]] = None,
    base_visible_probabilities: Optional[Sequence[float]] = None,
) -> dict[str, Any]:
    """log Z by annealed importance sampling, as `marbm eval --ais`.

    Keys: log_z and log_z_stderr (forward estimate), log_z_low and log_z_high
    (the bracket to report), log_z_forward_low/high, log_weights, and with
    reverse=True log_z_reverse, log_z_reverse_stderr, log_z_reverse_low/high,
    reverse_log_weights; log_z_base, runs, intervals, seconds. data sets the
    base rate and the reverse runs' starting rows."""

def find_mode(
    rbm: Rbm,
    solver: Solver = "sb",
    variant: Literal["discrete", "ballistic"] = "discrete",
    backend: Backend = "cpu",
    replicas: int = 0,
    steps: int = 0,
    time_step: float = 0.0,
    beta_hot: float = 0.0,
    beta_cold: float = 0.0,
    seed: int = 0,
    max_enumerated_units: int = 32,
    warm_visible: Optional[npt.ArrayLike] = None,
    warm_hidden: Optional[npt.ArrayLike] = None,
    start_visible: Optional[npt.ArrayLike] = None,
    keep_minima: int = 0,
) -> dict[str, Any]:
    """The ground state argmin E(v, h), as `marbm mode`.

    Keys: visible, hidden (uint8 arrays), energy, replicas, steps,
    replicas_at_best, seconds, solver, minima_visible (keep_minima rows with
    solver 'local') and minima_energy. Zero options are chosen by size."""

def sample(
    rbm: Rbm,
    chains: int = 10,
    steps: int = 1000,
    snapshots: int = 0,
    from_data: Optional[DataSource] = None,
    seed: int = 0,
    backend: Backend = "cpu",
    threads: int = 0,
) -> npt.NDArray[np.uint8]:
    """Block-Gibbs chains on the engine, as `marbm sample`, from the rows of from_data (cycled) or
    from uniform random states. Returns the final states, shape (chains, n_visible), or with
    snapshots=S the states after steps*(s+1)/S sweeps, shape (chains, S, n_visible)."""

def train(
    data: DataSource,
    *,
    hidden: Optional[int] = None,
    init: Union[Rbm, dict[str, Any], None] = None,
    method: Method = "cd",
    k: int = 1,
    lr: float = 0.1,
    batch: int = 100,
    iters: Optional[int] = None,
    epochs: Optional[int] = None,
    seed: int = 0,
    backend: Backend = "cpu",
    eval_every: int = 0,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    init_sigma: float = 0.01,
    init_visible_bias: Literal["data", "random"] = "data",
    chains: int = 0,
    threads: int = 0,
    exact_max_units: int = 24,
    test_data: Optional[DataSource] = None,
    callback: Optional[Callable[[dict[str, Any]], None]] = None,
    sample_positive_hidden: bool = False,
    exact_metrics: bool = True,
    lr_schedule: Literal["constant", "linear", "exponential"] = "constant",
    lr_final: float = 0.0,
    checkpoint_every: int = 0,
    checkpoint: Optional[str] = None,
    resume: Optional[str] = None,
    out: Optional[str] = None,
    base: Literal["cd", "pcd"] = "cd",
    p_max: float = 0.1,
    alpha: float = 20.0,
    beta: float = -6.0,
    mode_solver: Literal["exhaustive", "sb", "sa", "local", "auto"] = "auto",
    mode_lr_scale: Literal["push", "constant"] = "push",
    mode_target: Literal["joint", "marginal"] = "joint",
    mode_step: Literal["replace", "add"] = "replace",
    mode_lr_factor: float = 1.0,
    mode_states: int = 1,
    mode_replicas: int = 0,
    mode_steps: int = 0,
) -> TrainResult:
    """Trains an RBM with the library's driver, as `marbm train` (same options, `-` spelled `_`).

    data: an array of 0/1 rows (numpy, PyTorch CPU tensor, ...) or a data spec
    ('shifting-bars:6:3', 'idx:PATH@0:9000', ...). A CUDA tensor (uint8 or bool
    rows with contiguous columns) trains on the CUDA engine of its device
    (backend 'cuda' or 'auto') without a copy through the host; what needs the
    rows on the host is then left out (the history's kl and
    mean_log_likelihood are NaN) and init_visible_bias='data' and test_data are
    refused. The run starts from init
    (a model to continue) or from Rbm.random(n, hidden, init_sigma, seed) with
    the data's base rates as visible biases (init_visible_bias='data'). init
    is an Rbm or a dict of the arrays weights (n, m), visible_bias (n,) and
    hidden_bias (m,): CPU arrays of any real dtype (copied, as
    Rbm.from_arrays), or float32 CUDA tensors (DLPack; W's columns
    contiguous, any row and bias strides), which the CUDA engine of their
    device (backend 'cuda') copies device to device, never through the host:
    the run is bit for bit the run from the same parameters as an Rbm.
    Give iters (updates) or epochs. callback(point) is called at every
    evaluation (update 0, every eval_every updates, the last) with a dict of
    that evaluation's numbers (exact KL and log-likelihood when 2^min(n, m) <=
    2^exact_max_units, unless exact_metrics=False); an exception it raises stops training and
    propagates. The mode options (base ... mode_steps) apply to method='mode'.
    lr_schedule 'linear' or 'exponential' goes from lr at the first update to
    lr_final at the last. checkpoint_every=N writes a checkpoint (model plus
    the state to continue from) to the file `checkpoint` (else `out`) every N
    updates; resume=PATH continues the run of such a checkpoint, given the
    same settings, and ends bit-identical to the run never interrupted.
    out=PATH writes the trained model there atomically (safetensors) with the
    metadata `marbm train --out` writes (a diverged run: its last finite
    model, marked diverged_at); the path is checked before training. The
    result's summary is what `marbm train --json` prints.
    Raises UsageError for bad settings, DataError for bad data and
    TrainingDiverged when the parameters become non-finite."""

def study(
    data: str = "shifting-bars:6:3",
    *,
    hidden: int = 6,
    methods: Sequence[Method] = ("cd", "mode"),
    runs: int = 10,
    iters: int = 20000,
    batch: int = 6,
    lr: float = 0.2,
    k: int = 1,
    eval_every: int = 200,
    seed: int = 1,
    init_sigma: float = 0.01,
    backend: Backend = "cpu",
    threads: int = 0,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    chains: int = 0,
    test_data: Optional[str] = None,
    lr_schedule: Literal["constant", "linear", "exponential"] = "constant",
    lr_final: float = 0.0,
    sample_positive_hidden: bool = False,
    out: Optional[str] = None,
    plot: bool = True,
    keep_models: bool = False,
    **mode_options: Any,
) -> dict[str, Any]:
    """An exact-KL study, as `marbm study` (same options, `-` spelled `_`): runs of every method,
    run r of each from the same start.

    Returns {'methods': {name: {'iteration': (E,), 'kl': (runs, E), 'p_mode': (runs, E),
    'seconds': (runs,), 'diverged_at': (runs,) (-1: finished), 'median_final_kl', 'min_final_kl',
    'max_final_kl', and with test_data 'test_mean_log_likelihood': (runs, E) and
    'median_final_test_mean_log_likelihood'}}, 'seconds': wall time, 'threads_used'}.
    out=DIR writes DIR/kl.csv, DIR/summary.json and DIR/kl.png with the library code of
    `marbm study --out DIR` (the same bytes for the same settings, but for the timings in
    summary.json); plot=False leaves the plot out, keep_models=True saves every run's final model
    as DIR/models/METHOD-RUN.safetensors. The result then has 'files': {'csv', 'summary', 'png'
    (None without a plot), 'plot_message' (why not, when plotting failed), 'models'}.
    Mode options as in train()."""

def write_tiles_png(path: str, tiles: npt.ArrayLike, columns: int = 0, border: int = 1) -> None:
    """Writes tiles of shape (count, height, width), values in [0, 1] (0 black, 1 white, others clipped),
    as one 8-bit grayscale PNG grid with `columns` tiles per row (0: about square) and a mid-gray
    frame of `border` pixels, as `marbm show` and `marbm sample` draw them."""

def version() -> str:
    """marbm's version string."""

def cuda_compiled() -> bool:
    """Whether this build has the CUDA engine."""

def cuda_devices() -> list[dict[str, Any]]:
    """Usable CUDA devices: ordinal, name, compute_capability, memory_bytes (empty without any)."""
