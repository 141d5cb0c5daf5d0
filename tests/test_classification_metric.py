"""The offline classification metric (longbird/tasks/metrics/classification) takes what evaluate's
"accuracy", "f1" and "roc_auc" take: class ids, multi-hot rows, scores; checked against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from longbird.tasks import recipe


@pytest.fixture(scope="module")
def single():
    return recipe.load_metric("classification")


@pytest.fixture(scope="module")
def multi():
    return recipe.load_metric("classification", "multilabel")


LABELS = np.array([0, 1, 1, 0, 1, 0, 1, 1])
SCORES = np.array([[0.2, 0.1], [0.3, 0.9], [0.8, 0.1], [0.1, 0.4], [0.0, 2.0], [1.0, -1.0], [0.2, 0.3], [0.6, 0.5]])


def test_class_ids_as_evaluate_accuracy_and_f1_take_them(single):
    ids = SCORES.argmax(-1)
    result = single.compute(predictions=ids, references=LABELS)
    assert result == pytest.approx({"accuracy": accuracy_score(LABELS, ids), "f1": f1_score(LABELS, ids)})
    # python lists of ints, multi-class (macro F1 by default, `average` as in evaluate's f1)
    predictions, references = [0, 2, 1, 2, 0, 1], [0, 2, 2, 2, 1, 1]
    result = single.compute(predictions=predictions, references=references)
    assert result == pytest.approx(
        {"accuracy": accuracy_score(references, predictions), "f1": f1_score(references, predictions, average="macro")}
    )
    weighted = single.compute(predictions=predictions, references=references, average="weighted")
    assert weighted["f1"] == pytest.approx(f1_score(references, predictions, average="weighted"))


def test_class_ids_with_prediction_scores_give_auroc(single):
    ids = SCORES.argmax(-1)
    binary = single.compute(predictions=ids, references=LABELS, prediction_scores=SCORES[:, 1])
    assert binary["auroc"] == pytest.approx(roc_auc_score(LABELS, SCORES[:, 1]))
    assert binary["accuracy"] == pytest.approx(accuracy_score(LABELS, ids))
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(3), size=12)
    references = np.arange(12) % 3
    result = single.compute(
        predictions=probabilities.argmax(-1),
        references=references,
        prediction_scores=probabilities,
        scores_are_probabilities=True,
    )
    assert result["auroc"] == pytest.approx(roc_auc_score(references, probabilities, multi_class="ovr"))


def test_scores_as_predictions_keep_working(single):
    """What the recipes pass: one row of logits per example."""
    result = single.compute(predictions=SCORES, references=LABELS)
    assert result == pytest.approx(
        {
            "accuracy": accuracy_score(LABELS, SCORES.argmax(-1)),
            "f1": f1_score(LABELS, SCORES.argmax(-1)),
            "auroc": roc_auc_score(LABELS, SCORES[:, 1]),
        }
    )


def test_multi_hot_decisions_as_run_classification_passes_them(multi):
    references = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    logits = np.array([[2.0, -1.0, 0.5], [-1.0, 0.5, 0.3], [0.3, -0.2, -1.0], [-2.0, -1.0, 1.5]])
    decisions = np.where(logits > 0, 1, 0)  # what run_classification.py computes from the logits
    result = multi.compute(predictions=decisions, references=references, average="micro")
    assert result == pytest.approx(
        {"accuracy": (decisions == references).mean(), "f1": f1_score(references, decisions, average="micro")}
    )
    macro = multi.compute(predictions=decisions, references=references, average="macro")
    assert macro["f1"] == pytest.approx(f1_score(references, decisions, average="macro"))
    # the same logits as scores: the same decisions, and AUROC over the labels with both classes
    scored = multi.compute(predictions=logits, references=references)
    assert scored["accuracy"] == result["accuracy"] and scored["f1"] == pytest.approx(result["f1"])
    assert scored["auroc"] == pytest.approx(roc_auc_score(references, logits, average="macro"))
    assert scored["auroc_labels"] == 3
    with_scores = multi.compute(predictions=decisions, references=references, prediction_scores=logits)
    assert with_scores["auroc"] == pytest.approx(scored["auroc"])


def test_run_classification_style_compute_metrics_gives_finite_numbers(single):
    """run_classification.py: argmax of the logits, then the mean of every returned value."""
    result = single.compute(predictions=np.argmax(SCORES, axis=1), references=LABELS)
    combined = np.mean(list(result.values()))
    assert np.isfinite(combined) and set(result) == {"accuracy", "f1"}


def test_bad_inputs_name_the_argument(single, multi):
    with pytest.raises(ValueError, match=r"predictions: .*0\.7 is not an integer.*argmax"):
        single.compute(predictions=[0.7, 1, 0], references=[0, 1, 0])
    with pytest.raises(ValueError, match=r"average='binary' is not an F1 average for multi-label"):
        multi.compute(predictions=[[1, 0]], references=[[1, 0]], average="binary")
    with pytest.raises(ValueError, match=r"average='mean'"):
        single.compute(predictions=[0, 1], references=[0, 1], average="mean")
    with pytest.raises(ValueError, match="prediction_scores has 2 rows for 3 references"):
        single.compute(predictions=[0, 1, 0], references=[0, 1, 0], prediction_scores=[0.1, 0.9])
    with pytest.raises(ValueError, match="prediction_scores: one score per example .* 3 classes"):
        single.compute(predictions=[0, 1, 2], references=[0, 1, 2], prediction_scores=[0.1, 0.9, 0.3])
    with pytest.raises(ValueError, match="prediction_scores: the predictions already are class scores"):
        single.compute(predictions=SCORES, references=LABELS, prediction_scores=SCORES)
    with pytest.raises(ValueError, match=r"predictions have shape \(1, 2\) but references \(1, 3\)"):
        multi.compute(predictions=[[0.5, -1.0]], references=[[1, 0, 1]])
