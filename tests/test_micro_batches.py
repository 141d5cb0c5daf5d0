"""`--micro_batch_tokens`: a training batch runs in token-budget micro-batches with the gradients
and loss of the whole batch (classification BigBird/ETC, question answering, summarization), also
under gradient accumulation with `num_items_in_batch`; pretraining refuses the flag."""

from __future__ import annotations

import pytest
import torch
from test_padding_free_recipes import recipe_trainer  # noqa: F401  (fixture)

from longbird.tasks.micro_batches import split_by_tokens

pytestmark = pytest.mark.usefixtures("one_thread")

README_LENGTHS = [4096, 2600, 1700, 1100, 800, 600, 450, 350]


def padded_batch(lengths: list[int]) -> dict:
    width = max(lengths)
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    return {"input_ids": torch.arange(len(lengths))[:, None] * mask, "attention_mask": mask, "note": "kept"}


def test_split_packs_whole_examples_longest_first_within_the_budget():
    batch = padded_batch(README_LENGTHS)
    pieces = split_by_tokens(batch, 4096)
    rows = [p.inputs["input_ids"][:, 0].tolist() for p in pieces]
    assert rows == [[0], [1, 3, 7], [2, 4, 5, 6]]  # 4096 | 2600+1100+350 | 1700+800+600+450
    for piece in pieces:
        assert int(piece.inputs["attention_mask"].sum()) <= 4096
        assert piece.inputs["input_ids"].shape[1] == 4096  # the batch's width: the models skip padding
        assert piece.inputs["note"] == "kept"
        assert piece.items == len(piece.inputs["input_ids"])  # no labels: examples
    # an example longer than the budget is a micro-batch alone; a budget above the batch keeps it whole
    assert [len(p.inputs["input_ids"]) for p in split_by_tokens(batch, 1000)] == [1, 1, 1, 1, 1, 2, 1]
    assert len(split_by_tokens(batch, 1 << 20)) == 1


def test_split_counts_labelled_tokens_as_loss_items():
    batch = padded_batch([6, 4, 3])
    batch["labels"] = torch.tensor([[5, -100, 5, -100, 5, -100], [5] * 4 + [-100] * 2, [-100] * 6])
    pieces = split_by_tokens(batch, 7)
    assert [(p.inputs["labels"].shape[0], p.items) for p in pieces] == [(1, 3), (2, 4)]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4096"])
def test_split_rejects_a_budget_that_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="max_tokens must be a positive number of tokens"):
        split_by_tokens(padded_batch([3, 2]), bad)


def no_dropout(model: torch.nn.Module) -> None:
    for name in ("attention_probs_dropout_prob", "hidden_dropout_prob", "attention_dropout", "dropout"):
        if hasattr(model.config, name):
            setattr(model.config, name, 0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0


def gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(split: dict, whole: dict) -> None:
    assert whole and split.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def step(trainer, batch, tokens, num_items=None) -> tuple[torch.Tensor, dict]:
    trainer.model.zero_grad(set_to_none=True)
    trainer.micro_batch_tokens = tokens
    loss = trainer.training_step(trainer.model, dict(batch), num_items)
    return loss, gradients(trainer.model)


@pytest.mark.parametrize(
    "case", ["classification-bigbird", "classification-etc", "question-answering-bigbird", "summarization-pegasus"]
)
def test_micro_batched_step_has_the_whole_batch_gradients_and_loss(recipe_trainer, case):  # noqa: F811
    trainer = recipe_trainer(case, "--micro_batch_tokens", "40")
    assert trainer.micro_batch_tokens == 40
    no_dropout(trainer.model)  # the two steps must see the same network
    batch = next(iter(trainer.get_train_dataloader()))
    real = batch["attention_mask"].sum(1)
    budget = int(real.max())  # the longest example: several micro-batches
    assert len(split_by_tokens(batch, budget)) > 1, real
    trainer.current_gradient_accumulation_steps = 1
    whole_loss, whole = step(trainer, batch, None)
    split_loss, split = step(trainer, batch, budget)
    torch.testing.assert_close(split_loss, whole_loss, rtol=1e-5, atol=1e-6)
    assert_same_gradients(split, whole)

    if "labels" in batch:  # gradient accumulation: the loss is divided by the items of every accumulated batch
        trainer.current_gradient_accumulation_steps = 2
        items = torch.tensor(3 * int(batch["labels"].ne(-100).sum()))
        whole_loss, whole = step(trainer, batch, None, items)
        split_loss, split = step(trainer, batch, budget, items)
        torch.testing.assert_close(split_loss, whole_loss, rtol=1e-5, atol=1e-6)
        assert_same_gradients(split, whole)


def test_micro_batch_tokens_flag_errors(recipe_trainer, capsys):  # noqa: F811
    for case, value, message in (
        ("classification-bigbird", "0", "--micro_batch_tokens must be a positive number of tokens"),
        ("pretraining-bigbird", "100", "--micro_batch_tokens is for the fine-tuning recipes"),
    ):
        with pytest.raises(SystemExit):
            recipe_trainer(case, "--micro_batch_tokens", value)
        assert message in capsys.readouterr().err


def test_pieces_run_in_turn_handing_freed_host_memory_back_between_them(monkeypatch):
    from longbird.tasks import micro_batches

    calls = []
    monkeypatch.setattr(micro_batches, "release_freed_host_memory", lambda: calls.append("trim"))
    pieces = split_by_tokens(padded_batch([5, 4, 3]), 5)
    seen = micro_batches.run_in_turn(pieces, lambda p, last: (len(p.inputs["input_ids"]), last), torch.device("cpu"))
    assert seen == [(1, False), (1, False), (1, True)] and calls == ["trim", "trim"]
    calls.clear()
    micro_batches.run_in_turn(pieces, lambda p, last: None, torch.device("meta"))  # an accelerator's allocator
    assert calls == []


def test_recipe_trains_in_micro_batches_end_to_end(recipe_trainer):  # noqa: F811
    """Trainer's own loop (gradient accumulation, optimizer, logging) over micro-batched steps."""
    trainer = recipe_trainer(
        "classification-bigbird", "--micro_batch_tokens", "40", "--max_steps", "2", "--gradient_accumulation_steps", "2"
    )
    calls = []
    original = trainer.compute_loss

    def counting(*args, **kwargs):
        calls.append(trainer._loss_scale)
        return original(*args, **kwargs)

    trainer.compute_loss = counting
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    assert len(calls) > 4 and all(scale is not None and 0 < scale < 1 for scale in calls)  # split steps only
