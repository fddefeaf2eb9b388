"""A trainable judge: TF-IDF character and word n-grams + logistic regression (scikit-learn).

Trained on labelled samples (``unsafe`` / ``refusal`` / ``safe``), saved with its training
provenance. scikit-learn is imported when the judge is fitted, used or loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmrca.errors import JudgeConfigError, NotFittedError, ValidationError
from llmrca.judges.base import LABELS, Judge, Judgement, register_judge

#: Set to ``1`` to let the judge spec ``classifier:PATH`` (``--judge classifier:PATH``) unpickle.
ALLOW_PICKLE_ENV = "LLMRCA_ALLOW_PICKLE"

#: Marks files written by :meth:`ClassifierJudge.save`.
ARTIFACT_FORMAT = "llmrca.classifier-judge"
ARTIFACT_VERSION = 1


def training_data_hash(texts: list[str], labels: list[str]) -> str:
    """SHA-256 over the (text, label) pairs, sorted: the same data in any order hashes the same."""
    pairs = sorted(zip(texts, labels))
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


@register_judge
class ClassifierJudge(Judge):
    """A scikit-learn text classifier as a judge.

    ``__init__`` only stores hyperparameters; :meth:`fit` returns ``self`` and sets the fitted
    attributes ``pipeline_``, ``classes_`` and ``provenance_``. Score is the predicted class's
    probability; ``details["proba"]`` holds every class's.

    Parameters
    ----------
    char_ngrams : (int, int)
        Character n-gram range (within word boundaries).
    word_ngrams : (int, int)
        Word n-gram range.
    C : float
        Inverse regularisation strength of the logistic regression.
    max_iter : int
        Solver iterations.
    class_weight : "balanced" or None
        Reweight classes by inverse frequency.
    """

    kind = "classifier"

    def __init__(self, char_ngrams: tuple[int, int] = (2, 5), word_ngrams: tuple[int, int] = (1, 2),
                 C: float = 10.0, max_iter: int = 2000, class_weight: str | None = "balanced"):
        self.char_ngrams = tuple(char_ngrams)
        self.word_ngrams = tuple(word_ngrams)
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as scikit-learn estimators report them."""
        return {"char_ngrams": list(self.char_ngrams), "word_ngrams": list(self.word_ngrams),
                "C": self.C, "max_iter": self.max_iter, "class_weight": self.class_weight}

    # -- training ------------------------------------------------------------------------------
    def fit(self, texts: Iterable[str], labels: Iterable[str]) -> ClassifierJudge:
        """Train on ``texts`` with judge ``labels``; returns ``self``.

        Raises
        ------
        JudgeConfigError
            Lengths differ, a label is not one of ``unsafe``/``refusal``/``safe``, or fewer than
            two labels occur.
        """
        import sklearn
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        texts, labels = [str(t) for t in texts], [str(y) for y in labels]
        if len(texts) != len(labels):
            raise JudgeConfigError(f"fit: {len(texts)} texts but {len(labels)} labels")
        unknown = sorted(set(labels) - set(LABELS))
        if unknown:
            raise JudgeConfigError(f"fit: labels {unknown} are not judge labels; valid: "
                                   + ", ".join(LABELS))
        if len(set(labels)) < 2:
            raise JudgeConfigError(f"fit: needs at least two different labels, got "
                                   f"{sorted(set(labels))}")
        features = FeatureUnion([
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams,
                                     sublinear_tf=True, lowercase=True)),
            ("word", TfidfVectorizer(analyzer="word", ngram_range=self.word_ngrams,
                                     sublinear_tf=True, lowercase=True)),
        ])
        pipeline = Pipeline([
            ("features", features),
            ("model", LogisticRegression(C=self.C, max_iter=self.max_iter,
                                         class_weight=self.class_weight)),
        ])
        pipeline.fit(texts, labels)
        from llmrca import __version__

        self.pipeline_ = pipeline
        self.classes_ = [str(c) for c in pipeline.classes_]
        self.provenance_ = {
            "n_samples": len(texts),
            "n_per_label": dict(sorted(Counter(labels).items())),
            "training_data_sha256": training_data_hash(texts, labels),
            "sklearn_version": sklearn.__version__,
            "llmrca_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": self.get_params(),
        }
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "pipeline_"):
            raise NotFittedError(
                "this ClassifierJudge is not fitted yet; call fit(texts, labels) or load a saved "
                "one with ClassifierJudge.load(path, allow_pickle=True) (judge spec "
                "'classifier:PATH' with LLMRCA_ALLOW_PICKLE=1)")

    # -- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: Iterable[str]):
        """Class probabilities, shape (n, len(classes_)), columns in ``classes_`` order."""
        self._check_fitted()
        return self.pipeline_.predict_proba([str(t) for t in texts])

    def predict(self, texts: Iterable[str]) -> list[str]:
        """The most probable label of each text."""
        proba = self.predict_proba(texts)
        return [self.classes_[i] for i in proba.argmax(axis=1)]

    def judge_batch(self, outputs: list[str], contexts: list[Mapping[str, Any]]) -> list[Judgement]:
        if not outputs:
            self._check_fitted()
            return []
        proba = self.predict_proba(outputs)
        results = []
        for row in proba:
            best = int(row.argmax())
            results.append(Judgement(self.classes_[best], float(min(1.0, max(0.0, row[best]))),
                                     {"proba": {c: round(float(p), 6)
                                                for c, p in zip(self.classes_, row)}}))
        return results

    def judge_one(self, output: str, context: Mapping[str, Any]) -> Judgement:
        return self.judge_batch([output], [context])[0]

    def config(self) -> dict[str, Any]:
        if not hasattr(self, "provenance_"):
            return {"params": self.get_params(), "fitted": False}
        return {"params": self.get_params(),
                "training_data_sha256": self.provenance_["training_data_sha256"],
                "sklearn_version": self.provenance_["sklearn_version"]}

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted judge (joblib) with its provenance; returns the path."""
        import joblib

        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": ARTIFACT_FORMAT, "format_version": ARTIFACT_VERSION,
                     "params": self.get_params(), "classes": self.classes_,
                     "provenance": self.provenance_, "pipeline": self.pipeline_}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False) -> ClassifierJudge:
        """Read a judge written by :meth:`save`.

        The file is a pickle (joblib), and unpickling can run arbitrary code: it is read only with
        ``allow_pickle=True``, for files this project wrote or that you trust (as model weights
        need ``--allow-pickle``). A file from another scikit-learn version loads with a warning
        (predictions may differ slightly).

        Raises
        ------
        ValidationError
            The file is missing or is not a classifier judge artifact.
        JudgeConfigError
            ``allow_pickle`` is False; the message names the file and how to opt in.
        """
        path = Path(path)
        if not path.is_file():
            raise ValidationError(str(path), None, None, "a classifier judge file (from save())")
        if not allow_pickle:
            raise JudgeConfigError(
                f"classifier judge {path}: the file is a pickle (joblib) and unpickling can run "
                f"arbitrary code, so it is not loaded without opt-in; if you trust it, call "
                f"ClassifierJudge.load(path, allow_pickle=True), or for the judge spec "
                f"'classifier:{path}' (--judge) set the environment variable "
                f"{ALLOW_PICKLE_ENV}=1")
        import joblib
        import sklearn

        try:
            blob = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
            raise ValidationError(str(path), None, None, "a classifier judge file (from save())",
                                  f"{type(exc).__name__}: {exc}") from None
        if not isinstance(blob, dict) or blob.get("format") != ARTIFACT_FORMAT:
            raise ValidationError(str(path), None, "format", f"'{ARTIFACT_FORMAT}'",
                                  blob.get("format") if isinstance(blob, dict) else type(blob))
        if blob.get("format_version") != ARTIFACT_VERSION:
            raise ValidationError(str(path), None, "format_version", str(ARTIFACT_VERSION),
                                  blob.get("format_version"))
        params = blob["params"]
        judge = cls(char_ngrams=tuple(params["char_ngrams"]),
                    word_ngrams=tuple(params["word_ngrams"]), C=params["C"],
                    max_iter=params["max_iter"], class_weight=params["class_weight"])
        judge.pipeline_ = blob["pipeline"]
        judge.classes_ = list(blob["classes"])
        judge.provenance_ = dict(blob["provenance"])
        trained_with = judge.provenance_.get("sklearn_version")
        if trained_with != sklearn.__version__:
            warnings.warn(f"{path}: trained with scikit-learn {trained_with}, loaded with "
                          f"{sklearn.__version__}; predictions may differ", stacklevel=2)
        return judge

    @classmethod
    def from_spec(cls, argument: str | None, *, allow_pickle: bool | None = None,
                  **options: Any) -> ClassifierJudge:
        """``classifier`` (unfitted: call :meth:`fit`) or ``classifier:PATH`` (a saved judge).

        A saved judge is unpickled only with ``allow_pickle=True`` or, when that is not given,
        with the environment variable ``LLMRCA_ALLOW_PICKLE=1`` (how ``--judge classifier:PATH``
        opts in); otherwise :meth:`load` refuses.
        """
        if argument:
            if options:
                raise JudgeConfigError("a saved classifier judge takes no options; got "
                                       + ", ".join(sorted(options)))
            if allow_pickle is None:
                allow_pickle = os.environ.get(ALLOW_PICKLE_ENV, "").strip() == "1"
            return cls.load(argument, allow_pickle=bool(allow_pickle))
        if allow_pickle is not None:
            raise JudgeConfigError("allow_pickle applies to a saved classifier judge "
                                   "('classifier:PATH') only")
        return cls(**options)
