"""Accuracy, F1 and AUROC of a classifier, single-label or multi-label (scikit-learn).

Loaded with `evaluate.load(<this folder>)` (config "multilabel" for multi-label), so it runs
offline. It takes what `evaluate`'s "accuracy", "f1" and "roc_auc" take, so it can stand in for
them, e.g. as `--metric_name <this folder>` of transformers' `run_classification.py`:

- single-label, `predictions` = class ids (one int per example, as "accuracy" / "f1" take them):
  accuracy and F1; AUROC too when `prediction_scores=` is given (as "roc_auc" takes it: the
  class-1 score per example for two classes, one row of class scores per example otherwise).
- single-label, `predictions` = class scores (one row of logits or probabilities per example):
  accuracy and F1 of the argmax, and AUROC of the scores.
- multi-label, `predictions` = one row per example, either 0/1 decisions (multi-hot, as
  run_classification.py passes them; a row of only 0s and 1s is read this way) or scores (a label
  is on when its score > 0, i.e. logit > 0, or > 0.5 with `scores_are_probabilities=True`):
  accuracy per (example, label) pair (not evaluate's exact-match accuracy), micro F1, and, from
  scores (or `prediction_scores=`), macro AUROC over the labels that have both classes among the
  references (the others have no AUROC); `auroc_labels` says how many labels that was.

F1: of class 1 for two classes, macro otherwise (single-label); micro (multi-label); `average=`
("binary", "micro", "macro", "weighted", multi-label also "samples") overrides it, as in
evaluate's "f1". AUROC is NaN when the references hold a single class.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

AVERAGES = {
    "single-label": ("binary", "micro", "macro", "weighted"),
    "multi-label": ("micro", "macro", "weighted", "samples"),
}


class Classification(evaluate.Metric):
    def _info(self):
        scores = datasets.Sequence(datasets.Value("float32"))
        if self.config_name == "multilabel":
            features = [{"predictions": scores, "references": datasets.Sequence(datasets.Value("int32"))}]
        else:
            # a row of scores per example, else one class id (float32 holds every id exactly, and a
            # non-integer value is reported instead of being truncated to an id)
            features = [
                {"predictions": scores, "references": datasets.Value("int32")},
                {"predictions": datasets.Value("float32"), "references": datasets.Value("int32")},
            ]
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description=__doc__,
            features=[datasets.Features(f) for f in features],
        )

    def _compute(
        self,
        predictions,
        references,
        scores_are_probabilities: bool = False,
        average: str | None = None,
        prediction_scores=None,
    ):
        kind = "multi-label" if self.config_name == "multilabel" else "single-label"
        if average is not None and average not in AVERAGES[kind]:
            raise ValueError(
                f"average={average!r} is not an F1 average for {kind} predictions; "
                f"use one of {AVERAGES[kind]} (or leave it unset)"
            )
        predictions = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references)
        extra = None if prediction_scores is None else np.asarray(prediction_scores, dtype=np.float64)
        if extra is not None and len(extra) != len(labels):
            raise ValueError(
                f"prediction_scores has {len(extra)} rows for {len(labels)} references; pass one per example"
            )
        if kind == "multi-label":
            return _multilabel(predictions, labels, extra, scores_are_probabilities, average or "micro")
        return _single_label(predictions, labels, extra, scores_are_probabilities, average)


def _single_label(predictions, labels, extra, scores_are_probabilities, average):
    if predictions.ndim == 1:  # class ids
        if not np.array_equal(predictions, np.round(predictions)):
            bad = predictions[predictions != np.round(predictions)][0]
            raise ValueError(
                f"predictions: one number per example is read as a class id, but {bad:g} is not an integer; pass "
                "the argmax of the scores as predictions (and the scores as prediction_scores= for AUROC), or one "
                "row of class scores per example"
            )
        predicted = predictions.astype(int)
        scores = extra
        num_classes = (
            scores.shape[1]
            if scores is not None and scores.ndim == 2
            else max(2, int(max(predicted.max(), labels.max())) + 1)
        )
        if scores is not None and scores.ndim == 1 and num_classes != 2:
            raise ValueError(
                f"prediction_scores: one score per example is the class-1 score of two classes, but "
                f"there are {num_classes} classes; pass one row of class scores per example"
            )
    else:
        if extra is not None:
            raise ValueError(
                "prediction_scores: the predictions already are class scores (one row per example); "
                "pass class ids as predictions to give scores separately"
            )
        scores, predicted, num_classes = predictions, predictions.argmax(-1), predictions.shape[1]
    binary = num_classes == 2
    result = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1": float(f1_score(labels, predicted, average=average or ("binary" if binary else "macro"), zero_division=0)),
    }
    if scores is not None:
        if len(np.unique(labels)) < 2:
            result["auroc"] = float("nan")  # one class among the references: AUROC is undefined
        elif scores.ndim == 1 or binary:
            result["auroc"] = float(roc_auc_score(labels, scores if scores.ndim == 1 else scores[:, 1]))
        else:
            probabilities = scores if scores_are_probabilities else _softmax(scores)
            result["auroc"] = float(
                roc_auc_score(
                    labels, probabilities, multi_class="ovr", average="macro", labels=list(range(num_classes))
                )
            )
    return result


def _multilabel(predictions, labels, extra, scores_are_probabilities, average):
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions have shape {predictions.shape} but references {labels.shape}; "
            "pass one row per example with one entry per label"
        )
    if extra is not None and extra.shape != labels.shape:
        raise ValueError(
            f"prediction_scores have shape {extra.shape} but references {labels.shape}; "
            "pass one row of label scores per example"
        )
    if np.isin(predictions, (0.0, 1.0)).all():  # 0/1 decisions (multi-hot)
        predicted, scores = predictions.astype(int), extra
    else:
        if extra is not None:
            raise ValueError(
                "prediction_scores: the predictions already are scores; pass 0/1 decisions as "
                "predictions to give scores separately"
            )
        predicted, scores = (predictions > (0.5 if scores_are_probabilities else 0.0)).astype(int), predictions
    result = {
        "accuracy": float((predicted == labels).mean()),
        "f1": float(f1_score(labels, predicted, average=average, zero_division=0)),
    }
    if scores is not None:
        both = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
        result["auroc"] = (
            float(roc_auc_score(labels[:, both], scores[:, both], average="macro")) if both else float("nan")
        )
        result["auroc_labels"] = len(both)
    return result


def _softmax(scores):
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)
