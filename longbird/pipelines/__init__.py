"""Pipelines for long inputs, registered with transformers' `pipeline()` by `import longbird`:
`long-question-answering` and `long-summarization` (see `longbird.modeling.remote_code.PIPELINES`)."""

from .pipeline_longbird_question_answering import LongQuestionAnsweringPipeline, select_answers
from .pipeline_longbird_summarization import LongSummarizationPipeline

__all__ = ["LongQuestionAnsweringPipeline", "LongSummarizationPipeline", "select_answers"]
