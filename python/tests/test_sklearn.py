"""marbm.BernoulliRBM as a scikit-learn estimator."""

import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402  (bundled with scikit-learn, no download)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import marbm  # noqa: E402
from conftest import all_states, brute_log_z  # noqa: E402


def test_check_estimator():
    check_estimator(marbm.BernoulliRBM(n_components=8, n_iter=3, random_state=0))


def test_check_estimator_with_every_method():
    for method in ("cd", "mode", "exact"):
        check_estimator(marbm.BernoulliRBM(n_components=4, n_iter=2, random_state=0, method=method))


def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0)[:600], y[:600]


def test_attributes_are_views_and_transform_is_p_h_given_v():
    X, _ = digits()
    rbm = marbm.BernoulliRBM(n_components=16, n_iter=2, random_state=1).fit(X)
    assert rbm.components_.shape == (16, 64) and rbm.intercept_hidden_.shape == (16,)
    assert rbm.intercept_visible_.shape == (64,) and rbm.n_iter_ == 2 and rbm.n_features_in_ == 64
    assert not rbm.components_.flags.owndata  # a view of the trained model's weights
    assert rbm.method == "pcd"
    model = marbm.Rbm.from_arrays(rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)
    np.testing.assert_allclose(rbm.transform(X[:5]), model.hidden_probabilities((X[:5] >= 0.5).astype(np.uint8)))
    g = rbm.gibbs(X[:7])
    assert g.shape == (7, 64) and g.dtype == bool
    again = pickle.loads(pickle.dumps(rbm))
    np.testing.assert_array_equal(again.transform(X[:5]), rbm.transform(X[:5]))


def test_score_samples_is_exact_on_small_models():
    rng = np.random.RandomState(0)
    X = (rng.rand(40, 6) < 0.3).astype(np.float64)
    rbm = marbm.BernoulliRBM(n_components=5, n_iter=5, batch_size=5, random_state=0).fit(X)
    log_z = brute_log_z(rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)
    scores = rbm.score_samples(all_states(6))
    assert np.exp(scores).sum() == pytest.approx(1.0, abs=1e-9)
    model = marbm.Rbm.from_arrays(rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)
    np.testing.assert_allclose(scores, -model.free_energy(all_states(6)) - log_z, atol=1e-9)
    assert rbm.score(X) == pytest.approx(np.mean(rbm.score_samples(X)))


def test_score_samples_beyond_enumeration_uses_ais_and_is_deterministic():
    X, _ = digits()
    rbm = marbm.BernoulliRBM(n_components=24, n_iter=1, random_state=0, exact_max_units=10).fit(X[:100])
    first = rbm.score_samples(X[:10])
    np.testing.assert_array_equal(first, rbm.score_samples(X[:10]))
    assert np.all(first < 0)


def test_partial_fit_continues_from_the_current_parameters():
    X, _ = digits()
    rbm = marbm.BernoulliRBM(n_components=8, random_state=0)
    rbm.partial_fit(X[:100])
    before = rbm.components_.copy()
    rbm.partial_fit(X[100:200])
    assert rbm.n_iter_ == 2
    assert not np.array_equal(before, rbm.components_)
    with pytest.raises(ValueError, match="features"):
        rbm.partial_fit(X[:10, :32])


def test_bad_parameters_raise_the_library_error():
    X, _ = digits()
    with pytest.raises(marbm.UsageError, match="unknown training method 'sgd'"):
        marbm.BernoulliRBM(method="sgd").fit(X[:20])


def test_pipeline_with_grid_search():
    X, y = digits()
    pipeline = Pipeline(
        [("rbm", marbm.BernoulliRBM(n_iter=10, random_state=0)), ("logistic", LogisticRegression(max_iter=500))]
    )
    search = GridSearchCV(pipeline, {"rbm__n_components": [16, 48], "rbm__learning_rate": [0.1]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["rbm__n_components"] in (16, 48)
    # Features from the RBM carry the digit classes far above chance (0.1).
    assert search.best_score_ > 0.6


def test_verbose_prints_the_exact_log_likelihood_per_epoch(capsys):
    rng = np.random.RandomState(1)
    X = (rng.rand(30, 8) < 0.4).astype(np.float64)
    marbm.BernoulliRBM(n_components=4, n_iter=3, batch_size=10, verbose=1, random_state=0).fit(X)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[BernoulliRBM]")]
    # One line at the start and one after each of the 3 epochs (3 updates each).
    assert [line.split(",")[0] for line in lines] == [f"[BernoulliRBM] update {u}" for u in (0, 3, 6, 9)]
    assert all("mean log-likelihood -" in line for line in lines)
