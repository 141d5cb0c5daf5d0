"""BigBird-Pegasus configuration: transformers' fields plus longbird's graph options."""

import dataclasses

from huggingface_hub.dataclasses import strict
from transformers import BigBirdPegasusConfig as ReferenceBigBirdPegasusConfig
from transformers.activations import ACT2FN

from .configuration_longbird_bigbird import AcceptsReferenceConfig, check_graph_options, refuse_unsupported
from .configuration_longbird_etc import EtcConfig

#: longbird's BigBird-encoder options and their defaults: an ETC encoder does not read them
_BIGBIRD_ENCODER_OPTIONS = {
    "attention_type": "block_sparse",
    "num_global_tokens": 0,
    "window_blocks": 3,
    "random_plan": "reference",
    "attention_backend": "auto",
}
#: EtcConfig fields an ETC encoder takes from this config's own fields (not from etc_config)
_ETC_FIELDS_FROM_PEGASUS = {
    "vocab_size": "vocab_size",
    "hidden_size": "d_model",
    "num_hidden_layers": "encoder_layers",
    "num_attention_heads": "encoder_attention_heads",
    "intermediate_size": "encoder_ffn_dim",
    "hidden_dropout_prob": "dropout",
    "attention_probs_dropout_prob": "attention_dropout",
    "hidden_act": "activation_function",
    "initializer_range": "init_std",
    "pad_token_id": "pad_token_id",
}


@strict
class BigBirdPegasusConfig(AcceptsReferenceConfig, ReferenceBigBirdPegasusConfig):
    r"""Configuration of a longbird BigBird-Pegasus encoder-decoder.

    Every field of transformers' `BigBirdPegasusConfig` keeps its name, default and meaning, so a
    `config.json` written by `transformers.BigBirdPegasus*.save_pretrained` loads as is. The
    encoder runs on longbird's sparse core, so BigBird's graph options apply to it:

    num_global_tokens (`int`, defaults to 0): extra learned global tokens in front (BigBird-ETC);
        0 gives the reference's ITC layout (first and last block global).
    window_blocks (`int`, defaults to 3) / random_plan (`str`, defaults to `"reference"`) /
    attention_backend (`str`, defaults to `"auto"`): as in `longbird.BigBirdConfig`.
    encoder_type (`str`, defaults to `"bigbird"`): `"etc"` puts an ETC encoder (sentence-level
        global tokens, relative positions) under the same decoder; `etc_config` holds its
        ETC-specific fields (`local_radius`, `relative_pos_max_distance`, `relative_vocab_size`,
        `num_tokens_per_block`, `use_hard_g2l_mask`, ...); widths, dropouts, activation and
        `init_std` come from this config.

    Flags no model here implements raise a `ValueError` instead of being ignored (`check`):
    `chunk_size_feed_forward`, `pruned_heads`, and with `encoder_type="etc"` an `etc_config`
    key that is no `EtcConfig` field (or a width taken from this config), the BigBird-encoder
    options above, `attention_type="original_full"` and `encoder_layerdrop`. With
    `encoder_type="bigbird"`, `etc_config` is kept but not read. As in transformers, the encoder
    does not read `activation_dropout` (the decoder does).
    """

    model_type = "longbird_bigbird_pegasus"
    reference_model_type = "bigbird_pegasus"  # transformers' own BigBirdPegasus

    num_global_tokens: int = 0
    window_blocks: int = 3
    random_plan: str = "reference"
    attention_backend: str = "auto"
    encoder_type: str = "bigbird"
    etc_config: dict | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check()

    def check(self) -> None:
        """Reject settings no model can be built from, or that it would ignore, naming the field
        and the fix (ValueError)."""
        for heads, name in ((self.encoder_attention_heads, "encoder"), (self.decoder_attention_heads, "decoder")):
            if self.d_model % heads:
                raise ValueError(
                    f"hidden_size ({self.d_model}) must be divisible by num_attention_heads ({heads}): d_model must "
                    f"be a multiple of {name}_attention_heads."
                )
        check_graph_options(self)
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"activation_function {self.activation_function!r} is not one of transformers' activations."
            )
        if not 0 <= self.encoder_layerdrop < 1:
            raise ValueError(f"encoder_layerdrop must lie in [0, 1), got {self.encoder_layerdrop}.")
        if self.encoder_type not in ("bigbird", "etc"):
            raise ValueError(f"encoder_type must be 'bigbird' or 'etc', got {self.encoder_type!r}.")
        refuse_unsupported(self, "BigBird-Pegasus")
        if self.encoder_type == "etc":
            self.check_etc()

    def check_etc(self) -> None:
        """An ETC encoder reads `etc_config` and the shared widths, not the BigBird-encoder options."""
        for name, default in _BIGBIRD_ENCODER_OPTIONS.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} configures the BigBird encoder, but encoder_type is 'etc' (whose "
                    f"attention is set in etc_config: local_radius, attention_backend, ...); leave {name} at its "
                    f"default ({default!r}) or use encoder_type='bigbird'."
                )
        if self.encoder_layerdrop:
            raise ValueError(
                f"encoder_layerdrop={self.encoder_layerdrop} is not implemented by the ETC encoder; pass "
                "encoder_layerdrop=0.0 or use encoder_type='bigbird'."
            )
        fields = {f.name for f in dataclasses.fields(EtcConfig)}
        unknown = sorted(set(self.etc_config or {}) - fields)
        if unknown:
            raise ValueError(f"etc_config has keys {unknown} that are no EtcConfig fields; check their spelling.")
        taken = sorted(set(self.etc_config or {}) & set(_ETC_FIELDS_FROM_PEGASUS))
        if taken:
            raise ValueError(
                f"etc_config sets {taken}, which the ETC encoder takes from this config "
                f"({', '.join(_ETC_FIELDS_FROM_PEGASUS[k] for k in taken)}); set those fields instead."
            )
