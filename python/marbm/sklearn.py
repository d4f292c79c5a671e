"""marbm.BernoulliRBM: a scikit-learn estimator over marbm's training driver.

It has the constructor arguments, attributes and methods of
sklearn.neural_network.BernoulliRBM, trains with the library (PCD-1 by
default, as scikit-learn; also "cd", "mode" and "exact"), and its
score_samples is the exact log-likelihood log p(v) when the smaller layer has
at most ``exact_max_units`` units (scikit-learn's is a pseudo-likelihood).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _marbm

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _validate_data = None


def _validate(estimator, X, reset):
    if _validate_data is not None:
        return _validate_data(estimator, X, reset=reset, dtype=(np.float64, np.float32))
    return estimator._validate_data(X, reset=reset, dtype=(np.float64, np.float32))


class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Bernoulli restricted Boltzmann machine trained by marbm.

    Parameters
    ----------
    n_components : int, default=256
        Hidden units.
    learning_rate : float, default=0.1
        Learning rate of the (batch-averaged) gradient.
    batch_size : int, default=10
        Examples per minibatch.
    n_iter : int, default=10
        Passes over the training data (epochs).
    verbose : int, default=0
        Print the exact mean log-likelihood of the training data after every
        epoch (when the model is small enough to enumerate).
    random_state : int, RandomState instance or None, default=None
        Seeds marbm's random numbers (initial weights, batch order, Gibbs).
    method : {"pcd", "cd", "mode", "exact"}, default="pcd"
        Negative phase: persistent or plain contrastive divergence,
        mode-assisted training or the exact model expectations.
    k : int, default=1
        Gibbs steps of CD-k / PCD-k.
    momentum, weight_decay : float, default=0.0
    threshold : float, default=0.5
        Inputs are binarized as X >= threshold (marbm's units and data are
        binary; scikit-learn's estimator also trains on values in (0, 1)).
    init_visible_bias : {"data", "random"}, default="data"
        "data" starts the visible biases at the data's log-odds (marbm's
        default; scikit-learn starts them at 0).
    p_max, mode_solver : mode-assisted training options (method="mode"),
        as in marbm.train.
    exact_max_units : int, default=20
        score_samples is exact when 2^min(n_features, n_components) <=
        2^exact_max_units; beyond, log Z is an AIS estimate (1,000
        intervals, 100 runs, fixed seed).
    backend : {"cpu", "cuda", "auto"}, default="cpu"
    threads : int, default=0
        CPU threads (0: the runtime default).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        W transposed: a view of the trained model's weights (float32).
    intercept_hidden_ : ndarray of shape (n_components,)
    intercept_visible_ : ndarray of shape (n_features,)
    n_iter_ : int
        Passes over data made (fit: n_iter; each partial_fit adds one).
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.1,
        batch_size=10,
        n_iter=10,
        verbose=0,
        random_state=None,
        method="pcd",
        k=1,
        momentum=0.0,
        weight_decay=0.0,
        threshold=0.5,
        init_visible_bias="data",
        p_max=0.1,
        mode_solver="auto",
        exact_max_units=20,
        backend="cpu",
        threads=0,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.method = method
        self.k = k
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.threshold = threshold
        self.init_visible_bias = init_visible_bias
        self.p_max = p_max
        self.mode_solver = mode_solver
        self.exact_max_units = exact_max_units
        self.backend = backend
        self.threads = threads

    # ------------------------------------------------------------ internals
    def _binary(self, X):
        return np.ascontiguousarray(X >= self.threshold)

    def _model(self):
        return _marbm.Rbm.from_arrays(self.components_.T, self.intercept_visible_, self.intercept_hidden_)

    def _seed(self):
        return int(self.random_state_.randint(np.iinfo(np.int32).max))

    def _train(self, V, epochs, init):
        options = {}
        if self.method == "mode":
            options = {"p_max": self.p_max, "mode_solver": self.mode_solver}
        callback = None
        eval_every = 0
        if self.verbose:
            batches = -(-V.shape[0] // min(self.batch_size, V.shape[0]))
            eval_every = batches

            def callback(point):
                print(
                    f"[BernoulliRBM] update {point['iteration']}, mean log-likelihood "
                    f"{point['mean_log_likelihood']:.4f}, {point['seconds']:.2f}s"
                )

        result = _marbm.train(
            V,
            hidden=None if init is not None else self.n_components,
            init=init,
            method=self.method,
            k=self.k,
            lr=self.learning_rate,
            batch=self.batch_size,
            epochs=epochs,
            seed=self._seed(),
            backend=self.backend,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            init_visible_bias=self.init_visible_bias,
            threads=self.threads,
            eval_every=eval_every,
            exact_metrics=bool(self.verbose),
            exact_max_units=self.exact_max_units,
            callback=callback,
            **options,
        )
        model = result.model
        # Views of the trained model's memory (they keep it alive).
        self.components_ = model.weights.T
        self.intercept_hidden_ = model.hidden_bias
        self.intercept_visible_ = model.visible_bias

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    # ------------------------------------------------------------ scikit-learn API
    def fit(self, X, y=None):
        """Fits the model to X (rows binarized at threshold) with n_iter passes."""
        X = _validate(self, X, reset=True)
        self.random_state_ = check_random_state(self.random_state)
        self._train(self._binary(X), self.n_iter, None)
        self.n_iter_ = self.n_iter
        return self

    def partial_fit(self, X, y=None):
        """One pass over X in minibatches, from the current parameters (a new model on the first call).

        Unlike scikit-learn's, PCD chains do not persist between calls: each call starts them afresh."""
        first = not hasattr(self, "components_")
        X = _validate(self, X, reset=first)
        if not hasattr(self, "random_state_"):
            self.random_state_ = check_random_state(self.random_state)
        self._train(self._binary(X), 1, None if first else self._model())
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1
        return self

    def transform(self, X):
        """p(h_j = 1 | v) of every row: shape (n_samples, n_components), float64."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        return self._model().hidden_probabilities(self._binary(X))

    def gibbs(self, v):
        """One block-Gibbs step v -> h -> v on the engine; returns the new visible states (bool)."""
        check_is_fitted(self)
        v = _validate(self, v, reset=False)
        states = _marbm.sample(
            self._model(),
            chains=v.shape[0],
            steps=1,
            from_data=self._binary(v),
            seed=self._seed(),
            backend=self.backend,
            threads=self.threads,
        )
        return states.view(bool)

    def score_samples(self, X):
        """log p(v) of every row (binarized): exact when the model is enumerable, else with an AIS log Z."""
        check_is_fitted(self)
        X = _validate(self, X, reset=False)
        model = self._model()
        if min(model.n_visible, model.n_hidden) <= self.exact_max_units:
            log_z = _marbm.log_partition_exact(model, max_units=self.exact_max_units)
        else:
            base = 1.0 / (1.0 + np.exp(-model.visible_bias.astype(np.float64)))
            base = np.clip(base, 1e-3, 1 - 1e-3)
            log_z = _marbm.ais(
                model, runs=100, intervals=1000, reverse=False, seed=0, threads=self.threads,
                base_visible_probabilities=base.tolist(),
            )["log_z"]
        return np.asarray(_marbm.log_probability(model, self._binary(X), log_z=log_z), dtype=np.float64)

    def score(self, X, y=None):
        """Mean log p(v) over the rows of X (see score_samples)."""
        return float(np.mean(self.score_samples(X)))
