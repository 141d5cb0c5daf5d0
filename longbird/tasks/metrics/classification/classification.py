"""Accuracy, F1 and AUROC of a classifier's scores, single-label or multi-label (scikit-learn).

Loaded with `evaluate.load(<this folder>)` (config "multilabel" for multi-label), so it runs
offline. Predictions are class scores (logits or probabilities), one row per example, not argmax:
AUROC needs the ranking.

- single-label: accuracy; F1 of class 1 for two classes, macro F1 otherwise; AUROC of the class-1
  score for two classes, one-vs-rest macro AUROC otherwise.
- multi-label (a label is on when its score > 0, i.e. logit > 0 / probability > 0.5 with
  `scores_are_probabilities=True`): accuracy per (example, label) pair, micro F1, and macro AUROC
  over the labels that have both classes among the references (the others have no AUROC);
  `auroc_labels` says how many labels that was.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score
from sklearn.metrics import roc_auc_score


class Classification(evaluate.Metric):
    def _info(self):
        if self.config_name == "multilabel":
            features = {"predictions": datasets.Sequence(datasets.Value("float32")),
                        "references": datasets.Sequence(datasets.Value("int32"))}
        else:
            features = {"predictions": datasets.Sequence(datasets.Value("float32")),
                        "references": datasets.Value("int32")}
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description=__doc__, features=datasets.Features(features)
        )

    def _compute(self, predictions, references, scores_are_probabilities: bool = False):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references)
        if self.config_name == "multilabel":
            predicted = (scores > (0.5 if scores_are_probabilities else 0.0)).astype(int)
            both = [j for j in range(labels.shape[1]) if 0 < labels[:, j].sum() < len(labels)]
            auroc = (float(roc_auc_score(labels[:, both], scores[:, both], average="macro")) if both else float("nan"))
            return {
                "accuracy": float((predicted == labels).mean()),
                "f1": float(f1_score(labels, predicted, average="micro", zero_division=0)),
                "auroc": auroc,
                "auroc_labels": len(both),
            }
        predicted = scores.argmax(-1)
        num_classes = scores.shape[1]
        binary = num_classes == 2
        present = np.unique(labels)
        if len(present) < 2:
            auroc = float("nan")  # one class among the references: AUROC is undefined
        elif binary:
            auroc = float(roc_auc_score(labels, scores[:, 1]))
        else:
            probabilities = scores if scores_are_probabilities else _softmax(scores)
            auroc = float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro",
                                        labels=list(range(num_classes))))
        return {
            "accuracy": float(accuracy_score(labels, predicted)),
            "f1": float(f1_score(labels, predicted, average="binary" if binary else "macro", zero_division=0)),
            "auroc": auroc,
        }


def _softmax(scores):
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)
