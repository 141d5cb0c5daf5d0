"""Bad input fails with an error that names the argument and the fix, never deep inside torch
and never as silently wrong output (issue 10, item 3).

Models: token ids outside the vocabulary or negative (long and global inputs; BigBird, ETC and
both BigBird-Pegasus encoders), ETC's empty / float / 1-D inputs, empty batches, attention masks
other than 0/1. Loading: a checkpoint of another longbird family. The command line: user errors
in one line with exit code 2, bugs with their traceback, no pin_memory warning on CPU.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import pytest
import torch

from longbird import (
    BigBirdConfig,
    BigBirdForQuestionAnswering,
    BigBirdModel,
    BigBirdPegasusConfig,
    BigBirdPegasusForConditionalGeneration,
    BigBirdPegasusModel,
    EtcConfig,
    EtcModel,
    cli,
)
from longbird.modeling.longbird_input_checks import ValueChecks

VOCAB = 100
MISMATCH = r"vocabulary has 100 tokens.*tokenizer is not the model's"


def bigbird(**overrides) -> BigBirdModel:
    torch.manual_seed(0)
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        block_size=8,
        num_random_blocks=1,
        max_position_embeddings=256,
    )
    return BigBirdModel(BigBirdConfig(**{**kwargs, **overrides})).eval()


def etc(**overrides) -> EtcModel:
    torch.manual_seed(0)
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        local_radius=3,
        relative_pos_max_distance=2,
        relative_vocab_size=8,
        num_tokens_per_block=4,
    )
    return EtcModel(EtcConfig(**{**kwargs, **overrides})).eval()


def pegasus(encoder_type: str) -> BigBirdPegasusModel:
    torch.manual_seed(0)
    config = BigBirdPegasusConfig(
        vocab_size=VOCAB,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        block_size=8,
        num_random_blocks=1,
        max_position_embeddings=256,
        encoder_type=encoder_type,
        etc_config={
            "local_radius": 3,
            "relative_pos_max_distance": 2,
            "relative_vocab_size": 8,
            "num_tokens_per_block": 4,
        },
    )
    return BigBirdPegasusModel(config).eval()


def ids(batch: int = 2, length: int = 96, low: int = 0, high: int = VOCAB) -> torch.Tensor:
    return torch.randint(low, high, (batch, length), generator=torch.Generator().manual_seed(0))


def sentence_inputs(global_ids: torch.Tensor) -> dict:
    """ETC inputs with a caller-given global input: one global token per 4 long tokens."""
    return {"input_ids": ids(), "global_input_ids": global_ids, "sentence_ids": (torch.arange(96) // 4).expand(2, 96)}


# --------------------------------------------------------------------------------------------
# Token ids outside the vocabulary: a tokenizer/model mismatch
# --------------------------------------------------------------------------------------------

BAD_IDS = {"too_large": (VOCAB, VOCAB + 50), "negative": (-5, 0)}


@pytest.mark.parametrize("bad", BAD_IDS, ids=list(BAD_IDS))
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_bigbird_input_ids_outside_the_vocabulary(bad, attention_type):
    model = bigbird(attention_type=attention_type)
    batch = ids()
    batch[1, 7] = BAD_IDS[bad][0]
    with pytest.raises(ValueError, match=rf"`input_ids` holds token ids in \[.*\].*{MISMATCH}"):
        model(batch)


def test_bigbird_global_input_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=rf"`global_input_ids`.*{MISMATCH}"):
        bigbird()(ids(), global_input_ids=torch.tensor([[1, 2, 3], [4, 5, VOCAB]]))


@pytest.mark.parametrize("bad", BAD_IDS, ids=list(BAD_IDS))
def test_etc_input_ids_outside_the_vocabulary(bad):
    batch = ids()
    batch[0, -1] = BAD_IDS[bad][0]
    with pytest.raises(ValueError, match=rf"`input_ids`.*{MISMATCH}"):
        etc()(batch)


@pytest.mark.parametrize("bad", BAD_IDS, ids=list(BAD_IDS))
def test_etc_global_input_ids_outside_the_vocabulary(bad):
    global_ids = torch.ones(2, 24, dtype=torch.long)
    global_ids[1, 3] = BAD_IDS[bad][0]
    with pytest.raises(ValueError, match=rf"`global_input_ids`.*{MISMATCH}"):
        etc()(**sentence_inputs(global_ids))


@pytest.mark.parametrize("encoder_type", ["bigbird", "etc"])
def test_pegasus_encoder_input_ids_outside_the_vocabulary(encoder_type):
    batch = ids()
    batch[0, 0] = VOCAB + 1
    with pytest.raises(ValueError, match=rf"`input_ids`.*{MISMATCH}"):
        pegasus(encoder_type)(input_ids=batch, decoder_input_ids=ids(2, 5))


def test_resized_embeddings_accept_the_new_ids():
    """The check reads the size of the token table, not a stale config."""
    model = bigbird()
    model.resize_token_embeddings(VOCAB + 10)
    with torch.no_grad():
        model(ids(low=VOCAB, high=VOCAB + 10))


# --------------------------------------------------------------------------------------------
# ETC: empty, float and 1-D inputs; empty batches
# --------------------------------------------------------------------------------------------


def test_etc_empty_input():
    with pytest.raises(ValueError, match="long input is empty.*at least one token"):
        etc()(torch.zeros(2, 0, dtype=torch.long))


def test_etc_float_input_ids():
    with pytest.raises(TypeError, match=r"`input_ids` must be a tensor of integer token ids.*torch.float32"):
        etc()(ids().float())


def test_etc_float_global_input_ids():
    with pytest.raises(TypeError, match=r"`global_input_ids` must be a tensor of integer token ids"):
        etc()(**sentence_inputs(torch.ones(2, 24)))


def test_etc_one_dimensional_global_input_ids():
    with pytest.raises(ValueError, match=r"`global_input_ids` must be \[batch, global_length\].*\(24,\).*unsqueeze"):
        etc()(input_ids=ids(1), global_input_ids=torch.ones(24, dtype=torch.long))


@pytest.mark.parametrize("make", [bigbird, etc], ids=["bigbird", "etc"])
def test_empty_batch(make):
    with pytest.raises(ValueError, match=r"batch is empty \(batch_size 0\).*at least one example"):
        make()(torch.zeros(0, 96, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# attention_mask values other than 0 and 1
# --------------------------------------------------------------------------------------------

BAD_MASK_VALUES = [2, 0.5, -1]


def mask_with(value) -> torch.Tensor:
    mask = torch.ones(2, 96, dtype=torch.float if isinstance(value, float) else torch.long)
    mask[1, 40:] = 0
    mask[0, 10] = value
    return mask


@pytest.mark.parametrize("value", BAD_MASK_VALUES)
@pytest.mark.parametrize("attention_type", ["block_sparse", "original_full"])
def test_bigbird_attention_mask_other_than_0_1(value, attention_type):
    with pytest.raises(ValueError, match=rf"`attention_mask` must hold only 1 .* and 0 .*got \[{value}\]"):
        bigbird(attention_type=attention_type)(ids(), attention_mask=mask_with(value))


def test_bigbird_global_attention_mask_other_than_0_1():
    with pytest.raises(ValueError, match=r"`global_attention_mask` must hold only 1"):
        bigbird()(
            ids(),
            global_input_ids=torch.ones(2, 3, dtype=torch.long),
            global_attention_mask=torch.tensor([[1, 1, 2], [1, 0, 0]]),
        )


@pytest.mark.parametrize("value", BAD_MASK_VALUES)
def test_etc_attention_mask_other_than_0_1(value):
    with pytest.raises(ValueError, match=rf"`attention_mask` must hold only 1 .* and 0 .*got \[{value}\]"):
        etc()(ids(), attention_mask=mask_with(value))


@pytest.mark.parametrize("make", [bigbird, etc], ids=["bigbird", "etc"])
def test_masks_of_other_dtypes_with_0_1_values_still_work(make):
    model = make()
    mask = mask_with(1)
    with torch.no_grad():
        expected = model(ids(), attention_mask=mask).last_hidden_state
        for other in (mask.bool(), mask.float(), mask.int()):
            torch.testing.assert_close(model(ids(), attention_mask=other).last_hidden_state, expected)


# --------------------------------------------------------------------------------------------
# On an accelerator the checks wait for the model's own host transfer (simulated on CPU)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def deferred_checks(monkeypatch):
    """Every check takes the accelerator path: reduced on the device, settled later."""
    monkeypatch.setattr(ValueChecks, "deferred", staticmethod(lambda tensor: True))


def lookups_of(model) -> list:
    calls = []
    model.get_input_embeddings().register_forward_pre_hook(lambda module, args: calls.append(args[0]))
    return calls


@pytest.mark.parametrize(
    "make", [bigbird, etc, lambda: bigbird(attention_type="original_full")], ids=["bigbird", "etc", "bigbird_full"]
)
def test_deferred_checks_fail_before_any_embedding_lookup(deferred_checks, make):
    model = make()
    calls = lookups_of(model)
    bad = ids()
    bad[1, 3] = VOCAB
    with pytest.raises(ValueError, match=rf"`input_ids`.*{MISMATCH}"):
        model(bad)
    with pytest.raises(ValueError, match="`attention_mask` must hold only 1"):
        model(ids(), attention_mask=mask_with(2))
    assert calls == []


def test_deferred_checks_ride_on_bigbirds_length_transfer(deferred_checks, monkeypatch):
    """BigBird settles the checks in the transfer of per-example lengths it makes anyway: one
    `fetch`, no separate host read."""
    fetched, settled = [], []
    fetch, settle = ValueChecks.fetch, ValueChecks.settle

    def counted_fetch(self, values):
        fetched.append(len(self.pending))
        return fetch(self, values)

    def counted_settle(self):
        settled.append(len(self.pending))
        return settle(self)

    monkeypatch.setattr(ValueChecks, "fetch", counted_fetch)
    monkeypatch.setattr(ValueChecks, "settle", counted_settle)
    model = bigbird()
    with torch.no_grad():
        model(ids(), attention_mask=mask_with(1), token_type_ids=torch.zeros(2, 96, dtype=torch.long))
    assert fetched == [3] and settled == []  # input_ids, attention_mask, token_type_ids


@pytest.mark.parametrize("make", [bigbird, etc], ids=["bigbird", "etc"])
def test_deferred_checks_give_the_same_outputs(monkeypatch, make):
    model = make()
    with torch.no_grad():
        direct = model(ids(), attention_mask=mask_with(1)).last_hidden_state
        monkeypatch.setattr(ValueChecks, "deferred", staticmethod(lambda tensor: True))
        deferred = model(ids(), attention_mask=mask_with(1)).last_hidden_state
    torch.testing.assert_close(deferred, direct, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Loading a checkpoint of another longbird family
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folders = {}
    for name, model in (
        ("longbird_bigbird", bigbird()),
        ("longbird_etc", etc()),
        ("longbird_bigbird_pegasus", pegasus("bigbird")),
    ):
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return folders


@pytest.mark.parametrize(
    "loader,folder,right",
    [
        (EtcModel, "longbird_bigbird", "BigBirdModel"),
        (BigBirdModel, "longbird_etc", "EtcModel"),
        (BigBirdForQuestionAnswering, "longbird_etc", "EtcModel"),
        (BigBirdPegasusForConditionalGeneration, "longbird_bigbird", "BigBirdModel"),
        (BigBirdModel, "longbird_bigbird_pegasus", "BigBirdPegasusModel"),
    ],
)
def test_loading_another_familys_checkpoint_raises(saved, loader, folder, right):
    expected = loader.config_class.model_type
    with pytest.raises(
        ValueError,
        match=rf"holds a {folder} checkpoint, which the {expected} classes cannot load.*"
        rf"longbird\.{right}\b.*AutoModel",
    ):
        loader.from_pretrained(saved[folder])


def test_reference_bigbird_folder_still_loads(tmp_path):
    """transformers' own `big_bird` checkpoints are BigBird's family: they load, weights and all."""
    import transformers

    torch.manual_seed(0)
    reference = transformers.BigBirdModel(
        transformers.BigBirdConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=64,
            block_size=8,
            num_random_blocks=1,
            max_position_embeddings=256,
        )
    )
    reference.save_pretrained(tmp_path)
    model = BigBirdModel.from_pretrained(tmp_path)
    assert torch.equal(model.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("sequence,label\n" + "".join(f"{'ACGT' * 8},{i % 2}\n" for i in range(8)))
    return path


def run_cli(monkeypatch, capsys, argv: list[str]) -> tuple[int, list[str]]:
    monkeypatch.setattr(sys, "argv", ["longbird", *argv])  # main() rewrites sys.argv for the recipes
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    return done.value.code, capsys.readouterr().err.strip().splitlines()


def train_args(data, tmp_path, *extra) -> list[str]:
    return [
        "train",
        "classification",
        "--do_train",
        "--train_file",
        str(data),
        "--text_column",
        "sequence",
        "--train_tokenizer",
        "dna",
        "--tokenizer_vocab_size",
        "10",
        "--output_dir",
        str(tmp_path / "out"),
        "--report_to",
        "none",
        *extra,
    ]


@pytest.mark.parametrize(
    "case,message",
    [  # each from another stage: argument checks, the data, the tokenizer + config
        ("no_train_file", r"--do_train needs --train_file"),
        ("missing_train_file", r"--train_file '.*nowhere.csv' does not exist"),
        ("missing_model_folder", r"--model_name_or_path '/nonexistent/ckpt' is not a folder"),
        ("missing_column", r"has no column\(s\) \['promoter'\].*--label_column"),
        (
            "misspelt_override",
            r"--config_overrides: longbird_bigbird configs have no field 'hiden_size' "
            r"\(did you mean 'hidden_size'\?\)",
        ),
        ("override_of_wrong_type", r"--config_overrides \"hidden_size='wide'\".*hidden_size.*expected int"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, data, case, message):
    argv = {
        "no_train_file": ["train", "classification", "--do_train", "--output_dir", str(tmp_path)],
        "missing_train_file": train_args(tmp_path / "nowhere.csv", tmp_path),
        "missing_model_folder": train_args(data, tmp_path, "--model_name_or_path", "/nonexistent/ckpt"),
        "missing_column": train_args(data, tmp_path, "--label_column", "promoter"),
        "misspelt_override": train_args(data, tmp_path, "--config_overrides", "hiden_size=64"),
        "override_of_wrong_type": train_args(data, tmp_path, "--config_overrides", "hidden_size='wide'"),
    }[case]
    code, err = run_cli(monkeypatch, capsys, argv)
    assert code == 2
    assert not any("Traceback" in line for line in err)
    errors = [line for line in err if "error" in line.lower()]  # (datasets' progress bars go to stderr too)
    assert len(errors) == 1 and errors[0].startswith("longbird: error: ") and errors[0] == err[-1], err
    assert re.search(message, errors[0]), errors[0]


def test_cli_bugs_keep_their_traceback(monkeypatch, capsys):
    """An error that is not a deliberate check (here: a builtin's ValueError inside longbird) is
    not turned into a one-liner; LONGBIRD_TRACEBACK=1 shows user errors' tracebacks too."""
    from longbird.tasks import speed

    monkeypatch.setattr(speed, "main", lambda argv: max([]))
    with pytest.raises(ValueError, match="empty"):
        cli.main(["speed"])
    monkeypatch.setattr(speed, "main", lambda argv: torch.zeros(2) @ torch.zeros(3))
    with pytest.raises(RuntimeError):
        cli.main(["speed"])
    monkeypatch.setenv("LONGBIRD_TRACEBACK", "1")
    monkeypatch.setattr(sys, "argv", ["longbird"])
    with pytest.raises(ValueError, match="--do_train needs --train_file"):
        cli.main(["train", "classification", "--do_train", "--output_dir", "x"])
    assert capsys.readouterr().err == ""


def test_cli_process_prints_one_line_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "longbird.cli", "train", "classification", "--do_eval", "--output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "longbird: error: --do_eval needs --validation_file (a .json/.jsonl/.csv/.txt file)."
    ]


def test_convert_cli_missing_checkpoint_is_one_line(tmp_path, capsys):
    from longbird.conversion.cli import main as convert

    code = convert(
        [
            "etc-tf",
            "--tf-checkpoint",
            str(tmp_path / "none" / "model.ckpt"),
            "--config",
            str(tmp_path / "etc_config.json"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("longbird-convert: error: "), err


@pytest.mark.skipif(
    getattr(torch, "accelerator", torch.cuda).is_available(), reason="the warning is about machines without one"
)
def test_train_on_cpu_has_no_pin_memory_warning(tmp_path, data):
    """`longbird train` turns pinned memory off without an accelerator, where torch would warn in
    every DataLoader; an explicit --dataloader_pin_memory is kept (and then warns, as asked)."""
    from transformers import Trainer

    from longbird.tasks import recipe, sequence_classification

    def pin_memory_warnings(*extra) -> list[str]:
        _, _, training_args = recipe.parse_args(
            train_args(data, tmp_path, *extra)[2:], sequence_classification.ClassificationDataArguments
        )
        trainer = Trainer(
            model=torch.nn.Linear(2, 2),
            args=training_args,
            train_dataset=[{"input": [1.0, 2.0]}] * 4,
            data_collator=lambda rows: {"input": torch.tensor([r["input"] for r in rows])},
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            next(iter(trainer.get_train_dataloader()))
        return [str(w.message) for w in caught if "pin_memory" in str(w.message)]

    assert pin_memory_warnings() == []
    assert pin_memory_warnings("--dataloader_pin_memory", "true") != []  # the check can see the warning
    # the same from a config file (`longbird train <task> args.json`)
    values = {
        "do_train": True,
        "train_file": str(data),
        "text_column": "sequence",
        "train_tokenizer": "dna",
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
    }
    for given, expected in (({}, False), ({"dataloader_pin_memory": True}, True)):
        path = tmp_path / "args.json"
        path.write_text(json.dumps({**values, **given}))
        _, _, training_args = recipe.parse_args([str(path)], sequence_classification.ClassificationDataArguments)
        assert training_args.dataloader_pin_memory is expected
