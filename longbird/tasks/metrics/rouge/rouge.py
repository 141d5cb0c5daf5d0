"""ROUGE (Lin, 2004) as an offline `evaluate` metric, computed with Google's `rouge_score` package.

`evaluate.load("rouge")` fetches its code from the Hub; this module is the package's own copy of
the same metric (`longbird.tasks.recipe.load_metric("rouge")`), with two differences: the
aggregate is the exact mean over examples (evaluate's uses a bootstrap estimate of the mean),
and precision/recall can be returned too. Scores are fractions in [0, 1], F-measure by default.

evaluate scans this file for its dependencies, one import per line: keep it that way.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer, tokenizers

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W04-1013",
    pages = "74--81",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated summary with one or
more reference summaries by their overlapping n-grams (rouge1, rouge2, ...), their longest common
subsequence (rougeL) and the summary-level LCS over sentences split at newlines (rougeLsum).
Computed with `rouge_score` (https://github.com/google-research/google-research/tree/master/rouge),
whose default tokenizer lower-cases and keeps only [a-z0-9] tokens (pass `tokenizer` for other
scripts). With several references per prediction, each score is the best over the references
(`rouge_score`'s `score_multi`: the reference with the highest F-measure, per ROUGE type).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated summaries (str).
    references: one reference (str) per prediction, or a list of references (list of str).
        Separate sentences with newlines for rougeLsum.
    rouge_types: the scores to compute (default ["rouge1", "rouge2", "rougeL", "rougeLsum"]);
        "rouge1".."rouge9", "rougeL", "rougeLsum".
    use_stemmer: Porter-stem words before matching (default False).
    use_aggregator: True (default): one number per ROUGE type, the mean over examples;
        False: a list with one number per example.
    tokenizer: a callable `str -> list[str]` used instead of rouge_score's default tokenizer.
    measure: "fmeasure" (default), "precision", "recall", or "all" (three keys per type:
        `<type>_precision`, `<type>_recall`, `<type>_fmeasure`).
Returns:
    dict: rouge type -> score (fraction in [0, 1]), or -> list of scores without aggregation.
Examples:
    >>> rouge = longbird.tasks.recipe.load_metric("rouge")
    >>> rouge.compute(predictions=["the cat sat"], references=[["a cat sat down", "the dog sat"]])
    {'rouge1': 0.6666666666666666, 'rouge2': 0.4, 'rougeL': 0.6666666666666666, 'rougeLsum': 0.6666666666666666}
"""

_MEASURES = ("precision", "recall", "fmeasure")


class _CallableTokenizer(tokenizers.Tokenizer):
    def __init__(self, function):
        self.function = function

    def tokenize(self, text):
        return self.function(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013", "https://pypi.org/project/rouge-score/"],
        )

    def _compute(
        self,
        predictions,
        references,
        rouge_types=None,
        use_stemmer=False,
        use_aggregator=True,
        tokenizer=None,
        measure="fmeasure",
    ):
        if rouge_types is None:
            rouge_types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        if isinstance(rouge_types, str):
            rouge_types = [rouge_types]
        if measure not in _MEASURES + ("all",):
            raise ValueError(f"measure must be one of {list(_MEASURES) + ['all']}, got {measure!r}.")
        for name in rouge_types:
            if name not in ("rougeL", "rougeLsum") and not (
                name.startswith("rouge") and name[5:].isdigit() and 1 <= int(name[5:]) <= 9
            ):
                raise ValueError(f"Unknown ROUGE type {name!r}; use rouge1..rouge9, rougeL or rougeLsum.")
        if tokenizer is not None:
            tokenizer = _CallableTokenizer(tokenizer)
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        measures = _MEASURES if measure == "all" else (measure,)

        def key(name, part):
            return f"{name}_{part}" if measure == "all" else name

        per_example = {key(name, part): [] for name in rouge_types for part in measures}
        for prediction, refs in zip(predictions, references):
            if isinstance(refs, str):
                score = scorer.score(refs, prediction)
            elif len(refs) == 0:
                raise ValueError(f"A prediction has an empty list of references: {prediction!r:.80}.")
            else:
                score = scorer.score_multi(list(refs), prediction)
            for name in rouge_types:
                for part in measures:
                    per_example[key(name, part)].append(float(getattr(score[name], part)))
        if not use_aggregator:
            return per_example
        return {k: (sum(v) / len(v) if v else 0.0) for k, v in per_example.items()}
