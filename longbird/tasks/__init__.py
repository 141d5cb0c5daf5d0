"""Trainer recipes, one module per task, and the built-in demo (the `longbird` command).

Each recipe is `train(model_args, data_args, training_args) -> metrics` and `main(argv)`;
`longbird train <task> --help` lists its flags (TrainingArguments' plus the task's).
"""

#: `longbird train <task>` -> recipe module
RECIPES = {
    "question-answering": "longbird.tasks.question_answering",
    "summarization": "longbird.tasks.summarization",
    "classification": "longbird.tasks.sequence_classification",
    "pretraining": "longbird.tasks.pretraining",
}
