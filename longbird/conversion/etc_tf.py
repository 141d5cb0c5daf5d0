"""Convert a checkpoint of Google's TF ETC (`etcmodel`, e.g. the released `etc_base_2x_pretrain`)
into an `EtcModel` folder (config.json + model.safetensors). No TensorFlow needed: the checkpoint
is read with `tf_checkpoint.load_tf_checkpoint`.

Variable names are the reference's (its Keras layer names under `etc_document_bert/`); the rules
below map each to our parameter, transposing Dense kernels (`[in, out]` in TF).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..configuration.configuration_longbird_etc import EtcConfig
from ..modeling.modeling_longbird_etc import EtcModel
from .tf_checkpoint import list_tf_checkpoint, load_tf_checkpoint

#: fields of the reference's EtcConfig and their defaults there: a released etc_config.json that
#: leaves one out means the reference's default (e.g. share_qkv_projections=True), not ours
REFERENCE_DEFAULTS = {
    "segment_vocab_size": 16,
    "embedding_size": None,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "local_radius": 84,
    "att_size_per_head": None,
    "relative_pos_max_distance": 12,
    "relative_vocab_size": 32,
    "max_absolute_position_embeddings": 0,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "share_feed_forward_params": True,
    "share_kv_projections": False,
    "share_qkv_projections": True,
    "share_att_output_projection": False,
    "use_pre_activation_order": False,
    "use_hard_g2l_mask": False,
    "use_hard_l2g_mask": False,
}
#: reference fields with no effect on a PyTorch model's values (activation recomputation is
#: `model.gradient_checkpointing_enable()` here)
IGNORED_FIELDS = ("grad_checkpointing_period",)
#: the reference's "gelu" is the tanh approximation
ACTIVATIONS = {"gelu": "gelu_new"}

_ROOT = "etc_document_bert/"
_LAYERS = _ROOT + "global_local_transformer_layers/"
_LINEAR = r"(?P<param>kernel|bias)"
_NORM = r"(?P<param>gamma|beta)"

#: (TF name pattern, our parameter name template); `{param}` becomes weight/bias
RULES = [
    (_ROOT + r"token_emb_lookup/embedding_table", "embeddings.token_embeddings.weight"),
    (_ROOT + r"token_emb_lookup/projection/" + _LINEAR, "embeddings.token_projection.{param}"),
    (_ROOT + r"segment_emb_lookup/embedding_table", "embeddings.segment_embeddings.weight"),
    # the reference creates these outside its model scope, so they have no `etc_document_bert/`
    (
        r"(?:etc_document_bert/)?position_emb_lookup_(?P<side>long|global)/embedding_table",
        "embeddings.{side}_position_embeddings.weight",
    ),
    (_ROOT + r"(?P<side>long|global)_emb_layer_norm/" + _NORM, "embeddings.{side}_layer_norm.{param}"),
    (
        _LAYERS + r"fused_att_layer_(?P<i>\d+)/fused_global_local_att/(?P<role>\w+?)_projection/linear/" + _LINEAR,
        "layers.{i}.attention.{role}.{param}",
    ),
    (
        _LAYERS
        + r"fused_att_layer_(?P<i>\d+)/fused_global_local_att/(?P<side>long|global)_output_projection/"
        + _LINEAR,
        "layers.{i}.attention.{side}_output.{param}",
    ),
    (
        _LAYERS + r"fused_att_layer_(?P<i>\d+)/fused_global_local_att/(?P<side>long|global)_qkv_attention/"
        r"(?:qkv_relative_attention/)?relative_(?P<table>emb|bias)_table",
        "layers.{i}.attention.{side}_relative_{table}",
    ),
    (_LAYERS + r"fused_att_layer_(?P<i>\d+)/layer_norm_0/" + _NORM, "layers.{i}.long_attention_norm.{param}"),
    (_LAYERS + r"fused_att_layer_(?P<i>\d+)/layer_norm_1/" + _NORM, "layers.{i}.global_attention_norm.{param}"),
    (
        _LAYERS
        + r"(?P<ff>(?:long_|global_)?feed_forward)_layer_(?P<i>\d+)/dense_layers/layer_(?P<dense>[01])/"
        + _LINEAR,
        "layers.{i}.{ff}.dense_{dense}.{param}",
    ),
    (
        _LAYERS + r"(?P<ff>(?:long_|global_)?feed_forward)_layer_(?P<i>\d+)/layer_norm/" + _NORM,
        "layers.{i}.{ff}.layer_norm.{param}",
    ),
]
_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}
_TABLE_NAMES = {"emb": "embedding", "bias": "bias"}
_DENSE_NAMES = {"0": "in", "1": "out"}
#: optimizer state and bookkeeping, never model weights
_SKIPPED = re.compile(r"(^|/)(global_step|beta\d_power|adam_[mv]|Adam(_\d+)?|LAMB\w*|Momentum|accum\w*)($|/)")


def our_name(tf_name: str) -> tuple[str, bool] | None:
    """Our parameter name for a reference variable, and whether its values need a transpose
    (Dense kernels); None when no rule matches."""
    for pattern, template in RULES:
        match = re.fullmatch(pattern, tf_name)
        if match is None:
            continue
        parts = match.groupdict()
        transpose = parts.get("param") == "kernel"
        if "param" in parts:
            parts["param"] = _PARAM_NAMES[parts["param"]]
        if "table" in parts:
            parts["table"] = _TABLE_NAMES[parts["table"]]
        if "dense" in parts:
            parts["dense"] = _DENSE_NAMES[parts["dense"]]
        return template.format(**parts), transpose
    return None


def etc_config_from_reference(config_path: str | os.PathLike, **overrides) -> EtcConfig:
    """Our `EtcConfig` from the reference's `etc_config.json` (its defaults for missing fields)."""
    with open(config_path) as f:
        reference = json.load(f)
    if "vocab_size" not in reference:
        raise ValueError(f"{config_path} has no `vocab_size`; is it an ETC etc_config.json?")
    values = {**REFERENCE_DEFAULTS, **{k: v for k, v in reference.items() if k not in IGNORED_FIELDS}}
    values["hidden_act"] = ACTIVATIONS.get(values["hidden_act"], values["hidden_act"])
    return EtcConfig(**{**values, **overrides})


@dataclass
class ConversionReport:
    """What the conversion used and what it could not place, by name."""

    converted: dict[str, str] = field(default_factory=dict)  # TF name -> our name
    unused: list[str] = field(default_factory=list)  # checkpoint variables that map to nothing
    skipped: list[str] = field(default_factory=list)  # optimizer state / bookkeeping
    missing: list[str] = field(default_factory=list)  # our parameters the checkpoint lacks

    def summary(self) -> str:
        lines = [f"converted {len(self.converted)} variables"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} optimizer/bookkeeping variables")
        if self.unused:
            lines.append("unused checkpoint variables (no EtcModel parameter; e.g. pretraining heads):")
            lines += [f"  {name}" for name in self.unused]
        if self.missing:
            lines.append("EtcModel parameters missing from the checkpoint:")
            lines += [f"  {name}" for name in self.missing]
        return "\n".join(lines)


def convert_etc_tf_checkpoint(
    tf_checkpoint: str | os.PathLike,
    config: str | os.PathLike,
    output: str | os.PathLike | None = None,
    allow_missing: bool = False,
) -> tuple[EtcModel, ConversionReport]:
    """Build an `EtcModel` from a reference TF checkpoint and its `etc_config.json`.

    Args:
        tf_checkpoint: the checkpoint prefix (`.../model.ckpt`) or its folder.
        config: the reference's `etc_config.json`.
        output: when given, the model is saved there (safetensors) for `EtcModel.from_pretrained`.
        allow_missing: keep going when a parameter of ours has no variable (it keeps its random
            initialisation); otherwise that is a ValueError listing them.
    """
    etc_config = etc_config_from_reference(config)
    model = EtcModel(etc_config).eval()
    params = dict(model.state_dict())
    report = ConversionReport()
    names = list(list_tf_checkpoint(tf_checkpoint))
    wanted = {}
    for name in names:
        if _SKIPPED.search(name):
            report.skipped.append(name)
            continue
        target = our_name(name)
        if target is None or target[0] not in params:
            report.unused.append(name)
        else:
            wanted[name] = target
    values = load_tf_checkpoint(tf_checkpoint, names=list(wanted))
    state = {}
    for tf_name, (ours, transpose) in wanted.items():
        value = np.asarray(values[tf_name])
        tensor = torch.from_numpy(np.ascontiguousarray(value.T if transpose else value))
        if tuple(tensor.shape) != tuple(params[ours].shape):
            raise ValueError(
                f"{tf_name} has shape {tuple(value.shape)}, which does not fit {ours} {tuple(params[ours].shape)}: "
                f"does {config} describe this checkpoint?"
            )
        state[ours] = tensor.to(params[ours].dtype)
        report.converted[tf_name] = ours
    report.missing = sorted(set(params) - set(state))
    if report.missing and not allow_missing:
        raise ValueError(
            "The checkpoint lacks these EtcModel parameters (pass allow_missing=True to keep them random):\n"
            + report.summary()
        )
    model.load_state_dict(state, strict=False)
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output)
    return model, report
