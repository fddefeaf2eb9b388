"""Linear probes on hidden states, in the scikit-learn estimator shape.

:class:`LinearProbe` stores hyperparameters in ``__init__``; :meth:`LinearProbe.fit` returns
``self``; fitted state ends in ``_``. :func:`probe_layers` cross-validates one probe per layer
and reports held-out accuracy as correct / total with a Wilson interval (the held-out
predictions of all folds pooled: every example is predicted once, by a probe that never saw it);
:func:`transfer_accuracy` trains on one version's activations and tests on another's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from llmrca.errors import InvalidArgumentError, NotFittedError

__all__ = ["LinearProbe", "probe_layers", "transfer_accuracy"]


class LinearProbe:
    """Logistic regression on standardised activations.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength (scikit-learn's ``C``).
    max_iter : int
        Solver iterations.
    standardize : bool
        Scale each dimension to unit variance first (fitted on the training data only).

    Attributes
    ----------
    estimator_ : sklearn.pipeline.Pipeline
        The fitted pipeline.
    classes_ : numpy.ndarray
        The labels seen in ``fit``.
    coef_ : numpy.ndarray
        ``[d]`` weights in the (standardised) input space.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000, standardize: bool = True):
        self.C = C
        self.max_iter = max_iter
        self.standardize = standardize

    def get_params(self, deep: bool = True) -> dict:
        return {"C": self.C, "max_iter": self.max_iter, "standardize": self.standardize}

    def fit(self, X, y) -> LinearProbe:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise InvalidArgumentError(f"X must be [n, d] with one label per row; got X "
                                       f"{X.shape}, y {y.shape}")
        if len(np.unique(y)) < 2:
            raise InvalidArgumentError("a probe needs examples of both classes")
        steps = ([StandardScaler()] if self.standardize else []) + [
            LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))]
        self.estimator_ = make_pipeline(*steps).fit(X, y)
        self.classes_ = self.estimator_[-1].classes_
        self.coef_ = self.estimator_[-1].coef_[0]
        return self

    def _check(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("this LinearProbe is not fitted yet; call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        self._check()
        return self.estimator_.predict(np.asarray(X, dtype=np.float64))

    def decision_function(self, X) -> np.ndarray:
        self._check()
        return self.estimator_.decision_function(np.asarray(X, dtype=np.float64))

    def score(self, X, y) -> float:
        """Accuracy on ``(X, y)``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


def _layers(acts: np.ndarray, layers: Sequence[int] | None) -> list[int]:
    n_states = acts.shape[1]
    chosen = list(range(n_states)) if layers is None else [int(x) % n_states for x in layers]
    return chosen


def _row(layer: int, correct: int, n: int, confidence: float) -> dict:
    from llmrca.stats import rate

    estimate = rate(int(correct), int(n), confidence)
    return {"layer": layer, "correct": int(correct), "n": int(n), "accuracy": estimate.rate,
            "low": estimate.low, "high": estimate.high}


def probe_layers(acts, labels, *, layers: Sequence[int] | None = None, folds: int = 5,
                 seed: int = 0, probe: LinearProbe | None = None,
                 confidence: float = 0.95) -> pd.DataFrame:
    """Held-out accuracy of one probe per hidden-state index (stratified k-fold).

    Parameters
    ----------
    acts : array ``[n, n_states, d]``
    labels : array ``[n]`` of 0/1
    folds : int
        Folds (fewer when the smaller class has fewer examples; at least 2).

    Returns
    -------
    DataFrame
        ``layer, correct, n, accuracy, low, high`` (Wilson interval on the pooled held-out
        counts).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    acts, y = np.asarray(acts), np.asarray(labels).astype(int)
    if acts.ndim != 3 or len(acts) != len(y):
        raise InvalidArgumentError(f"acts must be [n, n_states, d] with one label per row; "
                                   f"got {acts.shape} and {y.shape}")
    smaller = int(min(np.sum(y == 0), np.sum(y == 1)))
    if smaller < 2:
        raise InvalidArgumentError(f"cross-validation needs >= 2 examples of each class; the "
                                   f"smaller class has {smaller}")
    splitter = StratifiedKFold(n_splits=min(int(folds), smaller), shuffle=True,
                               random_state=int(seed))
    base = probe if probe is not None else LinearProbe()
    rows = []
    for layer in _layers(acts, layers):
        X = acts[:, layer, :]
        correct = 0
        for train, test in splitter.split(X, y):
            fitted = clone(base).fit(X[train], y[train])
            correct += int(np.sum(fitted.predict(X[test]) == y[test]))
        rows.append(_row(layer, correct, len(y), confidence))
    return pd.DataFrame(rows)


def transfer_accuracy(train_acts, train_labels, test_acts, test_labels, *,
                      layers: Sequence[int] | None = None, probe: LinearProbe | None = None,
                      confidence: float = 0.95) -> pd.DataFrame:
    """Accuracy of probes trained on one set of activations (a version) and tested on another."""
    from sklearn.base import clone

    train_acts, test_acts = np.asarray(train_acts), np.asarray(test_acts)
    ytr, yte = np.asarray(train_labels).astype(int), np.asarray(test_labels).astype(int)
    if train_acts.shape[1:] != test_acts.shape[1:]:
        raise InvalidArgumentError(f"train and test activations differ in shape: "
                                   f"{train_acts.shape[1:]} vs {test_acts.shape[1:]}")
    base = probe if probe is not None else LinearProbe()
    rows = []
    for layer in _layers(train_acts, layers):
        fitted = clone(base).fit(train_acts[:, layer, :], ytr)
        correct = int(np.sum(fitted.predict(test_acts[:, layer, :]) == yte))
        rows.append(_row(layer, correct, len(yte), confidence))
    return pd.DataFrame(rows)
