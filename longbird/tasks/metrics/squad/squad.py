"""SQuAD exact match and F1 (the official v1.1 evaluation script's rules), offline.

Loaded with `evaluate.load(<this folder>)` (or `longbird.tasks.recipe.load_metric("squad")`);
inputs and outputs are those of evaluate's "squad" metric:

    predictions = [{"id": "q1", "prediction_text": "Denver Broncos"}, ...]
    references = [{"id": "q1", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [177, 184]}}, ...]
    -> {"exact_match": 100.0 * mean EM, "f1": 100.0 * mean F1}

Answers are normalised as the official script does: lower-cased, punctuation removed, the
articles "a", "an", "the" removed, whitespace collapsed. Each question scores the best of its
gold answers; predictions are matched to references by id (a reference whose id has no
prediction scores 0). A reference without
gold answers (SQuAD v2's unanswerable questions) has the empty answer as its gold answer, and an
empty prediction or gold answer scores F1 1 only when both are empty (the v2 script's rule).
"""

import collections
import re
import string

import datasets
import evaluate

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official SQuAD v1.1)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Rajpurkar et al. (2016), SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description=__doc__,
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        predicted = {p["id"]: p["prediction_text"] for p in predictions}
        exact = f1 = 0.0
        for reference in references:
            golds = list(reference["answers"]["text"]) or [""]
            prediction = predicted.get(reference["id"])
            if prediction is None:
                continue  # unanswered: scores 0
            exact += max(exact_match_score(prediction, gold) for gold in golds)
            f1 += max(f1_score(prediction, gold) for gold in golds)
        total = max(len(references), 1)
        return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}
