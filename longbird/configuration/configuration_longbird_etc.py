"""ETC configuration: the fields of the original `etcmodel.EtcConfig`, defaults of its released checkpoints."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_longbird_bigbird import AcceptsReferenceConfig, refuse_unsupported

#: relative ids past the 2k+1 position labels: l2g/g2l "other sentence" and "own sentence", and
#: the HotpotQA/WikiHop "other paragraph" id (the reference reserves these three)
NUM_OTHER_RELATIVE_IDS = 3


@strict
class EtcConfig(AcceptsReferenceConfig, PreTrainedConfig):
    r"""Configuration of an ETC (Extended Transformer Construction) encoder.

    Field names, meanings and the model's numerics follow Google's `etcmodel` (the TF reference);
    defaults are those of its released checkpoints (`etc_base_2x_pretrain`), which differ from the
    reference class's own defaults in `share_qkv_projections=False` and `use_hard_g2l_mask=True`.

    vocab_size / segment_vocab_size (`int`):
        One token table and one token-type table, shared by the long and the global input.
    embedding_size (`int`, *optional*):
        ALBERT-style factorised embeddings followed by a projection to `hidden_size`.
    local_radius (`int`, defaults to 84):
        Each long token attends `local_radius` long tokens on each side (window `2r + 1`).
    att_size_per_head (`int`, *optional*):
        Width of one head; `hidden_size / num_attention_heads` when unset.
    relative_pos_max_distance (`int`, defaults to 12) / relative_vocab_size (`int`, defaults to 32):
        Relative positions are clipped at `k`, giving `2k + 1` labels plus 3 relation ids;
        `relative_vocab_size` must be at least `2k + 4`.
    max_absolute_position_embeddings (`int`, defaults to 0):
        Absolute position tables (separate for long and global); 0 = none, as released.
    share_feed_forward_params / share_kv_projections / share_qkv_projections /
    share_att_output_projection (`bool`):
        The reference's parameter-sharing switches between the long and the global side.
    use_pre_activation_order (`bool`, defaults to False):
        Pre-LayerNorm residual blocks instead of BERT's post-LayerNorm order.
    use_hard_g2l_mask / use_hard_l2g_mask (`bool`):
        A global token reads only the long tokens of its own sentence / a long token reads only its
        own global token.
    num_tokens_per_block (`int`, defaults to 27):
        With only `input_ids`, one global token per this many long tokens is made (the
        reference's fixed-block inputs; 27 is its average sentence length).
    global_token_id (`int`, defaults to 1):
        Token id of those automatic global tokens (the reference uses 1 for sentence globals).
    cpc_loss_weight (`float`, defaults to 0.2) / cpc_temperature (`float`, defaults to 0.1):
        `EtcForPreTraining`: loss = (1 - w) * MLM + w * CPC; CPC scores are cosine similarities
        divided by the temperature.
    attention_backend (`str`, defaults to `"auto"`):
        `"blocked"` (sliding window in blocks of `local_radius + 1`, memory linear in the long
        length), `"dense"` (exact n x n path, for short inputs and tests) or `"auto"` (dense when
        the long input fits in three blocks, where blocking saves nothing).

    transformers' generic flags ETC does not implement raise a `ValueError` instead of being
    ignored (`check`): `is_decoder`, `add_cross_attention`, `is_encoder_decoder`,
    `chunk_size_feed_forward`, `pruned_heads`.
    """

    model_type = "longbird_etc"

    vocab_size: int = 30522
    segment_vocab_size: int = 16
    embedding_size: int | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    local_radius: int = 84
    att_size_per_head: int | None = None
    relative_pos_max_distance: int = 12
    relative_vocab_size: int = 32
    max_absolute_position_embeddings: int = 0
    intermediate_size: int = 3072
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    initializer_range: float = 0.02
    share_feed_forward_params: bool = True
    share_kv_projections: bool = False
    share_qkv_projections: bool = False
    share_att_output_projection: bool = False
    use_pre_activation_order: bool = False
    use_hard_g2l_mask: bool = True
    use_hard_l2g_mask: bool = False
    layer_norm_eps: float = 1e-12
    # longbird additions (HF conventions and conveniences)
    num_tokens_per_block: int = 27
    global_token_id: int = 1
    pad_token_id: int | None = 0
    classifier_dropout: float | int | None = None
    cpc_loss_weight: float = 0.2
    cpc_temperature: float = 0.1
    attention_backend: str = "auto"
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check()

    @property
    def head_size(self) -> int:
        return self.att_size_per_head or self.hidden_size // self.num_attention_heads

    def check(self) -> None:
        """Reject settings no model can be built from, naming the field and the fix (ValueError)."""
        if self.att_size_per_head is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}), or set att_size_per_head."
            )
        if self.local_radius < 1:
            raise ValueError(f"local_radius must be >= 1, got {self.local_radius}.")
        needed = 2 * self.relative_pos_max_distance + 1 + NUM_OTHER_RELATIVE_IDS
        if self.relative_pos_max_distance < 0 or self.relative_vocab_size < needed:
            raise ValueError(
                f"relative_vocab_size ({self.relative_vocab_size}) must be at least 2 * "
                f"relative_pos_max_distance + 4 = {needed} (2k+1 position labels and 3 relation ids); "
                f"raise relative_vocab_size or lower relative_pos_max_distance."
            )
        if self.num_tokens_per_block < 1:
            raise ValueError(f"num_tokens_per_block must be >= 1, got {self.num_tokens_per_block}.")
        if self.attention_backend not in ("auto", "blocked", "dense"):
            raise ValueError(f"attention_backend must be 'auto', 'blocked' or 'dense', got {self.attention_backend!r}.")
        if not 0 <= self.cpc_loss_weight <= 1:
            raise ValueError(f"cpc_loss_weight must lie in [0, 1], got {self.cpc_loss_weight}.")
        if self.cpc_temperature <= 0:
            raise ValueError(f"cpc_temperature must be > 0, got {self.cpc_temperature}.")
        self.check_unsupported()

    def check_unsupported(self) -> None:
        """transformers' generic config flags ETC does not implement: refused, not ignored."""
        for flag, what in (
            ("is_decoder", "ETC is a bidirectional encoder (no causal attention, no cache)"),
            ("add_cross_attention", "ETC layers have no cross-attention"),
            (
                "is_encoder_decoder",
                "ETC is an encoder; put it under a decoder with BigBirdPegasusConfig(encoder_type='etc')",
            ),
        ):
            if getattr(self, flag, False):
                raise ValueError(f"{flag}=True is not supported: {what}; pass {flag}=False or leave it out.")
        refuse_unsupported(self, "ETC")
