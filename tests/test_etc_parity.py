"""ETC against the original TF implementation (google-research etcmodel).

Fixtures in tests/fixtures/etc/<case>/ hold a TF checkpoint written by the reference, its
etc_config.json, the inputs it was fed and its outputs (see tests/fixtures/etc/README.md). Each
test converts the checkpoint with our converter (no TensorFlow) and compares outputs at
non-padding positions. `pytest tests/test_etc_parity.py -s` also prints the max |difference| per
case, input kind (our graph builders or the reference's side inputs) and executor (dense, blocked).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from longbird import EtcModel, cli
from longbird.conversion.cli import main as convert_cli
from longbird.conversion.etc_tf import convert_etc_tf_checkpoint
from longbird.modeling.longbird_global_local_graph import GRAPH_INPUTS, prepare_inputs

FIXTURES = Path(__file__).parent / "fixtures" / "etc"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "io.npz").exists()) if FIXTURES.exists() else []
#: cases whose side inputs came from breakpoints + sentence_ids
STRUCTURED = [c for c in CASES if c not in ("flexible", "fixed_blocks")]
TOLERANCE = 1e-5


def load_case(case: str):
    folder = FIXTURES / case
    model, report = convert_etc_tf_checkpoint(folder / "model.ckpt", folder / "etc_config.json")
    data = {k: torch.from_numpy(v) for k, v in np.load(folder / "io.npz").items()}
    return model, report, data


def long_tensor(x):
    return None if x is None else x.long()


def structure_inputs(data):
    return dict(
        input_ids=data["token_ids"].long(),
        global_input_ids=data["global_token_ids"].long(),
        token_type_ids=long_tensor(data.get("segment_ids")),
        global_token_type_ids=long_tensor(data.get("global_segment_ids")),
        long_breakpoints=long_tensor(data.get("long_breakpoints")),
        global_breakpoints=long_tensor(data.get("global_breakpoints")),
        sentence_ids=long_tensor(data.get("sentence_ids")),
    )


def explicit_side_inputs(data):
    return {name: data[name].long() for name in GRAPH_INPUTS}


def max_diffs(out, data) -> tuple[float, float]:
    """Largest |ours - reference| at non-padding positions: (long side, global side)."""
    long_real, global_real = data["long_real"].bool(), data["global_real"].bool()
    long_diff = (out.last_hidden_state - data["long_output"])[long_real].abs().max().item()
    global_diff = (out.global_last_hidden_state - data["global_output"])[global_real].abs().max().item()
    return long_diff, global_diff


def assert_outputs_match(out, data):
    long_diff, global_diff = max_diffs(out, data)
    assert long_diff < TOLERANCE and global_diff < TOLERANCE, (long_diff, global_diff)


pytestmark = pytest.mark.skipif(not CASES, reason="tests/fixtures/etc holds no reference cases")


@pytest.fixture(scope="module")
def figures():
    """Rows (case, n_long, inputs, executor, long diff, global diff) the output tests add; printed as a
    table after the module's tests (shown with `pytest -s`)."""
    rows = []
    yield rows
    if rows:
        order = {"structure": 0, "side inputs": 1, "dense": 0, "blocked": 1}
        print(f"\n\nETC vs the TF reference ({FIXTURES}): max |difference| at non-padding positions, float32")
        print("| case | n_long | inputs | executor | max diff long | max diff global |")
        print("|---|---:|---|---|---:|---:|")
        for case, n_long, kind, backend, long_diff, global_diff in sorted(
            rows, key=lambda row: (row[0], order[row[2]], order[row[3]])
        ):
            print(f"| {case} | {n_long} | {kind} | {backend} | {long_diff:.1e} | {global_diff:.1e} |")


def check_and_record(figures, case, kind, backend, out, data):
    long_diff, global_diff = max_diffs(out, data)
    figures.append((case, data["token_ids"].shape[1], kind, backend, long_diff, global_diff))
    assert long_diff < TOLERANCE and global_diff < TOLERANCE, (long_diff, global_diff)


@pytest.mark.parametrize("case", CASES)
def test_converter_places_every_variable(case):
    model, report, _ = load_case(case)
    assert not report.unused and not report.missing, report.summary()
    assert len(report.converted) == len(model.state_dict())


@pytest.mark.parametrize("case", STRUCTURED)
@pytest.mark.parametrize("backend", ["dense", "blocked"])
def test_outputs_equal_reference_from_structure_inputs(case, backend, figures):
    model, _, data = load_case(case)
    model.config.attention_backend = backend
    with torch.no_grad():
        out = model(**structure_inputs(data))
    check_and_record(figures, case, "structure", backend, out, data)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", ["dense", "blocked"])
def test_outputs_equal_reference_from_explicit_side_inputs(case, backend, figures):
    """Flexible masking: the reference's eight side-input tensors passed as they are."""
    model, _, data = load_case(case)
    model.config.attention_backend = backend
    inputs = {k: v for k, v in structure_inputs(data).items() if k in ("input_ids", "global_input_ids")}
    inputs["token_type_ids"] = long_tensor(data.get("segment_ids"))
    inputs["global_token_type_ids"] = long_tensor(data.get("global_segment_ids"))
    with torch.no_grad():
        out = model(**inputs, **explicit_side_inputs(data))
    check_and_record(figures, case, "side inputs", backend, out, data)


@pytest.mark.parametrize("case", STRUCTURED)
def test_built_side_inputs_equal_reference(case):
    model, _, data = load_case(case)
    graph = prepare_inputs(model.config, **structure_inputs(data)).graph
    for name, field in GRAPH_INPUTS.items():
        ours = getattr(graph, field).long()
        assert torch.equal(ours, data[name].long()), name


@pytest.mark.skipif("fixed_blocks" not in CASES, reason="no fixed_blocks fixture")
def test_fixed_block_globals_built_from_input_ids_alone():
    model, _, data = load_case("fixed_blocks")
    mask = data["input_mask"].long()
    model.config.num_tokens_per_block = 5
    with torch.no_grad():
        out = model(
            input_ids=data["token_ids"].long(), attention_mask=mask, token_type_ids=long_tensor(data.get("segment_ids"))
        )
    batch = prepare_inputs(model.config, input_ids=data["token_ids"].long(), attention_mask=mask)
    assert torch.equal(batch.global_input_ids, data["global_token_ids"].long())
    for name, field in GRAPH_INPUTS.items():
        assert torch.equal(getattr(batch.graph, field).long(), data[name].long()), name
    if "global_segment_ids" not in data:
        assert_outputs_match(out, data)


def longbird_convert(argv: list[str]) -> int:
    """`longbird convert ...` in this process: its exit code."""
    try:
        cli.main(["convert", *argv])
    except SystemExit as stop:
        return stop.code
    return 0


@pytest.mark.parametrize("command", [convert_cli, longbird_convert], ids=["longbird-convert", "longbird convert"])
def test_cli_writes_a_folder_from_pretrained_loads(tmp_path, capsys, command):
    case = STRUCTURED[0]
    folder = FIXTURES / case
    code = command(
        [
            "etc-tf",
            "--tf-checkpoint",
            str(folder / "model.ckpt"),
            "--config",
            str(folder / "etc_config.json"),
            "--output",
            str(tmp_path / "converted"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"saved to {tmp_path / 'converted'}" in out
    assert (tmp_path / "converted" / "model.safetensors").exists()
    model = EtcModel.from_pretrained(tmp_path / "converted").eval()
    data = {k: torch.from_numpy(v) for k, v in np.load(folder / "io.npz").items()}
    with torch.no_grad():
        out = model(**structure_inputs(data))
    assert_outputs_match(out, data)


def test_converter_reports_unused_and_missing_variables_by_name(tmp_path):
    import json

    folder = FIXTURES / STRUCTURED[0]
    config = json.loads((folder / "etc_config.json").read_text())
    config["num_hidden_layers"] += 1  # the checkpoint lacks this layer's variables
    (tmp_path / "etc_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"layers\.2\.attention\.long_query\.weight"):
        convert_etc_tf_checkpoint(folder / "model.ckpt", tmp_path / "etc_config.json")
    _, report = convert_etc_tf_checkpoint(folder / "model.ckpt", tmp_path / "etc_config.json", allow_missing=True)
    assert "layers.2.attention.long_query.weight" in report.missing

    config["num_hidden_layers"] -= 2  # now the checkpoint has a layer too many
    (tmp_path / "etc_config.json").write_text(json.dumps(config))
    _, report = convert_etc_tf_checkpoint(folder / "model.ckpt", tmp_path / "etc_config.json")
    assert any("fused_att_layer_1/" in name for name in report.unused)
    assert "fused_att_layer_1" in report.summary()


SIDE_INPUTS = FIXTURES / "side_inputs.npz"


@pytest.mark.skipif(not SIDE_INPUTS.exists(), reason="no side_inputs.npz fixture")
def test_graph_builders_equal_reference_side_inputs():
    from longbird.modeling.longbird_global_local_graph import (
        build_global_local_graph,
        dense_relative_ids,
        example_ids_from_breakpoints,
        fixed_block_globals,
        local_relative_ids,
    )

    data = {k: torch.from_numpy(v) for k, v in np.load(SIDE_INPUTS).items()}
    settings = sorted({k.split("/")[0] for k in data} - {"relpos"})
    assert settings, "empty fixture"
    for setting in settings:
        d = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(setting + "/")}
        if "input_mask" in d:  # the reference's fixed-block side inputs
            mask = d["input_mask"].long()
            sentence_ids, global_mask = fixed_block_globals(mask, int(d["num_tokens_per_block"]))
            assert torch.equal(global_mask * 1, d["global_token_ids"].long()), setting
            long_ids, global_ids = mask, global_mask
        else:
            long_ids = example_ids_from_breakpoints(d["long_breakpoints"].long())
            global_ids = example_ids_from_breakpoints(d["global_breakpoints"].long())
            sentence_ids = d["sentence_ids"].long()
        graph = build_global_local_graph(
            long_ids,
            global_ids,
            sentence_ids,
            int(d["local_radius"]),
            int(d["relative_pos_max_distance"]),
            bool(d["use_hard_g2l_mask"]),
            bool(d["use_hard_l2g_mask"]),
        )
        for name, field in GRAPH_INPUTS.items():
            assert torch.equal(getattr(graph, field).long(), d[name].long()), (setting, name)
    k = int(data["relpos/max_distance"])
    assert torch.equal(dense_relative_ids(9, k), data["relpos/full"][0].long())
    assert torch.equal(local_relative_ids(5, k).expand(9, -1), data["relpos/local"][0].long())
