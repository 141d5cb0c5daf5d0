"""Fine-tuning checkpoints loaded with `trust_remote_code=True` where longbird is not installed.

One subprocess (tests/remote_code_without_longbird.py, `import longbird` fails there) does what a
Hub user would: for a QA, a classification and a summarization model of every family it loads the
checkpoint through remote code, trains a few `Trainer` steps with a checkpoint save, calls
`save_model()`, evaluates (classification with the package's offline metric as
run_classification.py calls it, summarization with the offline ROUGE), reloads the saved folders the
same way and compares outputs; it pushes one of them to the local Hub endpoint (tests/hub_server.py)
and loads it back by repo id; and for every head of every family it saves twice in a row
(load -> save -> load -> save). The tests below read its per-case results and the folders it wrote.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from hub_server import LocalHub
from test_remote_code import tiny_bigbird, tiny_etc, tiny_pegasus
from transformers.dynamic_module_utils import get_relative_import_files

import longbird
from longbird.modeling import remote_code
from longbird.tasks import recipe
from longbird.tokenization import train_tokenizer

SCRIPT = Path(__file__).with_name("remote_code_without_longbird.py")
TEXTS = [
    "The river Nile flows north through Egypt.",
    "Paris is the capital of France.",
    "Long documents need sparse attention.",
    "Birds fly south in the winter.",
]
EXPORTED = {f"{module}.py" for module in remote_code.exported_modules()}
PUSHED_REPO = "user/tiny-remote-finetuned"

#: name -> (Auto class, task, model builder given the tokenizer)
FINETUNE = {
    "bigbird-qa": (
        "AutoModelForQuestionAnswering",
        "question-answering",
        lambda tok: longbird.BigBirdForQuestionAnswering(
            tiny_bigbird(sep_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
        ),
    ),
    "etc-qa": (
        "AutoModelForQuestionAnswering",
        "question-answering",
        lambda tok: longbird.EtcForQuestionAnswering(tiny_etc(pad_token_id=tok.pad_token_id)),
    ),
    "bigbird-classification": (
        "AutoModelForSequenceClassification",
        "classification",
        lambda tok: longbird.BigBirdForSequenceClassification(
            tiny_bigbird(num_labels=3, pad_token_id=tok.pad_token_id)
        ),
    ),
    "pegasus-summarization": (
        "AutoModelForSeq2SeqLM",
        "summarization",
        lambda tok: longbird.BigBirdPegasusForConditionalGeneration(
            tiny_pegasus(
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id
            )
        ),
    ),
}
#: every head of every family: "<model_type>-<Auto class>"
HEADS = [
    (model_type, auto)
    for model_type, entries in remote_code.AUTO_MAP.items()
    for auto in entries
    if auto != "AutoConfig"
]
PEGASUS_EOS = 3


def head_model_and_inputs(model_type: str, auto: str):
    torch.manual_seed(0)
    class_name = remote_code.AUTO_MAP[model_type][auto].split(".")[1]
    config = {
        "longbird_bigbird": tiny_bigbird,
        "longbird_etc": tiny_etc,
        "longbird_bigbird_pegasus": lambda: tiny_pegasus(
            eos_token_id=PEGASUS_EOS, pad_token_id=0, decoder_start_token_id=0
        ),
    }[model_type]()
    if model_type == "longbird_bigbird" and auto == "AutoModelForCausalLM":
        config = tiny_bigbird(is_decoder=True, attention_type="original_full")
    model = getattr(longbird, class_name)(config).eval()
    ids = torch.randint(5, 120, (2, 100), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids.view(2, 2, 50) if auto == "AutoModelForMultipleChoice" else ids}
    if model_type == "longbird_bigbird_pegasus":
        ids[:, -1] = PEGASUS_EOS  # one eos per row: the classification head reads it
        if auto in ("AutoModel", "AutoModelForSeq2SeqLM"):
            inputs["decoder_input_ids"] = torch.randint(5, 120, (2, 6), generator=torch.Generator().manual_seed(2))
    return model, inputs


@pytest.fixture(scope="module")
def hub():
    with LocalHub() as server:
        yield server
    assert not server.unknown_requests, f"the client called routes the local hub lacks: {server.unknown_requests}"


@pytest.fixture(scope="module")
def run(tmp_path_factory, hub):
    """Build the checkpoints with the package, then run every case in one process without it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only spin (several times slower on a busy machine)
    try:
        return _run(tmp_path_factory.mktemp("remote_finetune"), hub)
    finally:
        torch.set_num_threads(threads)


def _run(tmp, hub) -> tuple[Path, dict]:
    tokenizer = train_tokenizer(TEXTS * 10, vocab_size=120, eos_token="[SEP]")
    spec = {"out": str(tmp / "out"), "metrics": str(recipe.METRICS_DIR), "finetune": [], "heads": []}
    for name, (auto, task, build) in FINETUNE.items():
        torch.manual_seed(0)
        build(tokenizer).save_pretrained(tmp / name)
        tokenizer.save_pretrained(tmp / name)
        spec["finetune"].append(
            {
                "name": name,
                "auto": auto,
                "folder": str(tmp / name),
                "task": task,
                "push": PUSHED_REPO if name == "bigbird-classification" else None,
            }
        )
    for model_type, auto in HEADS:
        name = f"{model_type}-{auto}"
        model, inputs = head_model_and_inputs(model_type, auto)
        model.save_pretrained(tmp / "heads" / name)
        with torch.no_grad():
            expected = {k: v for k, v in model(**inputs).items() if torch.is_tensor(v)}
        torch.save({"inputs": inputs, "outputs": expected}, tmp / f"{name}.pt")
        spec["heads"].append(
            {"name": name, "auto": auto, "folder": str(tmp / "heads" / name), "inputs": str(tmp / f"{name}.pt")}
        )
    (tmp / "out").mkdir()
    (tmp / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_TOKEN="hf_local_dummy_token",
        HF_HOME=str(tmp / "hf_home"),
        HF_HUB_CACHE=str(tmp / "hf_home" / "hub"),
        HF_MODULES_CACHE=str(tmp / "modules"),
        TRANSFORMERS_VERBOSITY="error",
        HF_HUB_DISABLE_XET="1",
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp / "spec.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, json.loads((tmp / "out" / "results.json").read_text())


def case(run, name: str) -> dict:
    result = run[1][name]
    assert result["ok"], result["error"]
    return result


@pytest.mark.parametrize("name", list(FINETUNE))
def test_trainer_run_on_a_remote_code_checkpoint_saves_and_reloads(run, name):
    tmp, _ = run
    result = case(run, name)
    assert result["module"].startswith("transformers_modules."), result["module"]
    assert result["trained"], "the weights did not change in training"
    assert result["checkpoint_2_differs"], "the mid-training checkpoint holds the final weights"
    # the checkpoint Trainer wrote during training and the final save_model() folder carry all the code
    assert set(result["checkpoint_code"]) == EXPORTED and set(result["code"]) == EXPORTED
    metrics = result["metrics"]
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_loss"])  # finite, not NaN
    if "classification" in name:  # the offline metric took the class ids run_classification.py passes
        assert 0 <= metrics["eval_accuracy"] <= 1 and 0 <= metrics["eval_f1"] <= 1
    if "summarization" in name:
        assert 0 <= metrics["eval_rouge1"] <= 1
    # what remote code saved loads with the package too (no trust_remote_code: the registered classes)
    auto = FINETUNE[name][0]
    probe = torch.load(tmp / "out" / name / "probe.pt")
    model = getattr(transformers, auto).from_pretrained(tmp / "out" / name).eval()
    assert type(model).__module__.startswith("longbird.")
    with torch.no_grad():
        got = model(**probe["inputs"])
    for key, expected in probe["outputs"].items():
        torch.testing.assert_close(got[key], expected)


@pytest.mark.parametrize("model_type,auto", HEADS, ids=[f"{t}-{a}" for t, a in HEADS])
def test_every_head_saves_twice_identically_through_remote_code(run, model_type, auto):
    result = case(run, f"{model_type}-{auto}")
    assert all(m.startswith("transformers_modules.") for m in result["modules"]), result["modules"]
    assert result["differ"] == [], f"load -> save -> load -> save changed {result['differ']}"
    assert result["code_differ_from_package"] == []
    assert set(result["code"]) == EXPORTED


def test_push_to_hub_of_a_remote_code_model(run, hub):
    pushed = case(run, "bigbird-classification")["push"]
    assert pushed["module"].startswith("transformers_modules.user."), pushed["module"]  # downloaded code ran
    assert pushed["differ_from_local_save"] == []  # saving the Hub-loaded model again gives the same folder
    repo = hub.repos[PUSHED_REPO]
    assert EXPORTED | {"config.json", "model.safetensors", "tokenizer.json"} <= set(repo.files)
    config = json.loads(repo.files["config.json"])
    assert config["auto_map"] == remote_code.AUTO_MAP["longbird_bigbird"]
    assert any(r.startswith(f"GET /{PUSHED_REPO}/resolve/") and r.endswith("/etc_featurizer.py") for r in hub.requests)


# -- the invariant behind it, checked without a subprocess -------------------------------------


@pytest.mark.parametrize("model_type", list(remote_code.AUTO_MAP))
def test_any_saved_class_brings_every_module_into_the_module_cache(tmp_path, model_type):
    """transformers copies a loaded module's relative-import closure into its module cache; for every
    class a saved config names, that closure is the whole saved code, so the cache can save it again."""
    model, _ = head_model_and_inputs(model_type, "AutoModel")
    model.save_pretrained(tmp_path)
    written = {p.name for p in tmp_path.glob("*.py")}
    assert written == EXPORTED
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    for module in sorted({path.split(".")[0] for auto, path in auto_map.items() if auto != "AutoConfig"}):
        closure = {Path(f).name for f in get_relative_import_files(tmp_path / f"{module}.py")} | {f"{module}.py"}
        assert closure == written, f"{module}: transformers would cache {sorted(closure)}"


def test_config_naming_code_outside_the_exported_modules_is_refused(tmp_path):
    model, _ = head_model_and_inputs("longbird_bigbird", "AutoModel")
    model.config.custom_pipelines = {"my-task": {"impl": "my_pipeline.MyPipeline", "pt": ["AutoModel"]}}
    with pytest.raises(ValueError, match=r"\['my_pipeline'\].*custom_pipelines"):
        model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no remote code for model_type 'bert'"):
        remote_code.write_remote_code(tmp_path, "bert")


def test_writing_from_an_incomplete_folder_names_the_missing_module(tmp_path):
    """The exported remote_code.py, run from a folder that lacks a module, fails before writing anything."""
    source = tmp_path / "incomplete"
    source.mkdir()
    model, _ = head_model_and_inputs("longbird_bigbird", "AutoModel")
    model.save_pretrained(tmp_path / "saved")
    for name in EXPORTED - {"pipeline_longbird_summarization.py"}:
        (source / name).write_bytes((tmp_path / "saved" / name).read_bytes())
    spec = importlib.util.spec_from_file_location("incomplete_remote_code", source / "remote_code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = tmp_path / "target"
    target.mkdir()
    (target / "config.json").write_text((tmp_path / "saved" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"pipeline_longbird_summarization\.py is in none of"):
        module.write_remote_code(target, "longbird_bigbird", "BigBirdModel")
    assert [p.name for p in target.iterdir()] == ["config.json"]
