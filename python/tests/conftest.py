import itertools

import numpy as np
import pytest


def all_states(n):
    """Every 0/1 vector of length n, as rows (2^n x n, uint8)."""
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.uint8)


def brute_log_z(w, a, b):
    """log Z by summing exp(-E) over both layers (the oracle for small models)."""
    w = np.asarray(w, np.float64)
    v = all_states(w.shape[0]).astype(np.float64)
    h = all_states(w.shape[1]).astype(np.float64)
    minus_e = (v @ np.asarray(a, np.float64))[:, None] + (h @ np.asarray(b, np.float64))[None, :] + v @ w @ h.T
    top = minus_e.max()
    return top + np.log(np.exp(minus_e - top).sum())


@pytest.fixture
def small_rbm():
    import marbm

    return marbm.Rbm.random(5, 4, sigma=0.8, seed=7)
