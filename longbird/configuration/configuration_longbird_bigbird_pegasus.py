"""BigBird-Pegasus configuration: transformers' fields plus longbird's graph options."""

from huggingface_hub.dataclasses import strict
from transformers import BigBirdPegasusConfig as ReferenceBigBirdPegasusConfig

from .configuration_longbird_bigbird import AcceptsReferenceConfig, BigBirdConfig


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
        `num_tokens_per_block`, `use_hard_g2l_mask`, ...); widths come from this config.
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
        """Reject settings no model can be built from, naming the field and the fix (ValueError)."""
        BigBirdConfig.check(self)
        if self.encoder_type not in ("bigbird", "etc"):
            raise ValueError(f"encoder_type must be 'bigbird' or 'etc', got {self.encoder_type!r}.")
