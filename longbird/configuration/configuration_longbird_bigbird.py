"""BigBird configuration: transformers' BigBird fields plus the graph options we add."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

#: the model types of each longbird family (its own and the reference implementation's): a
#: checkpoint of one family cannot be loaded by the classes of another
MODEL_FAMILIES = {
    "longbird_bigbird": ("longbird_bigbird", "big_bird"),
    "longbird_etc": ("longbird_etc",),
    "longbird_bigbird_pegasus": ("longbird_bigbird_pegasus", "bigbird_pegasus"),
}
#: the class to name when a checkpoint says nothing about its own (no `architectures`)
_FAMILY_CLASSES = {
    "longbird_bigbird": "BigBirdModel",
    "longbird_etc": "EtcModel",
    "longbird_bigbird_pegasus": "BigBirdPegasusForConditionalGeneration",
}


class AcceptsReferenceConfig:
    """A config that takes the `config.json` of the reference implementation's model type
    (`reference_model_type`, e.g. transformers' "big_bird") as its own, so
    `from_pretrained(folder)` of a reference checkpoint needs no manual step, and refuses the
    `config.json` of another longbird family (e.g. an ETC checkpoint given to `BigBirdModel`),
    which transformers would only warn about before returning a randomly initialised model."""

    reference_model_type: str | None = None

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        if cls.reference_model_type and config_dict.get("model_type") == cls.reference_model_type:
            config_dict = cls.from_reference({**config_dict, "model_type": cls.model_type})
        return super().from_dict(config_dict, **kwargs)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        check_model_family(cls.model_type, config_dict, pretrained_model_name_or_path)
        if cls.reference_model_type and config_dict.get("model_type") == cls.reference_model_type:
            config_dict = cls.from_reference({**config_dict, "model_type": cls.model_type})
        return config_dict, kwargs

    @classmethod
    def from_reference(cls, config_dict: dict) -> dict:
        """The reference implementation's config dict, with anything its model type implies."""
        return config_dict


def check_model_family(model_type: str, config_dict: dict, source) -> None:
    """Raise when `config_dict` (read from `source`) is a checkpoint of another longbird family than
    `model_type`'s. Other model types pass (transformers warns): e.g. BigBird warm-started
    from a BERT/RoBERTa checkpoint is a known use."""
    found = config_dict.get("model_type")
    family = next((name for name, types in MODEL_FAMILIES.items() if found in types), None)
    if family is None or found in MODEL_FAMILIES.get(model_type, (model_type,)):
        return
    saved = [name for name in config_dict.get("architectures") or [] if isinstance(name, str)]
    right = saved[0] if saved else _FAMILY_CLASSES[family]
    raise ValueError(
        f"{str(source)!r} holds a {found} checkpoint, which the {model_type} classes cannot load (its weights "
        f"would be dropped and the model randomly initialised). Load it with longbird.{right}, or with "
        f"transformers.AutoModel / AutoModelFor<task> after `import longbird`, which pick the right class."
    )


def check_graph_options(config) -> None:
    """The block-sparse graph options of BigBird and of BigBird-Pegasus's encoder (ValueError
    naming the field)."""
    if config.attention_type not in ("block_sparse", "original_full"):
        raise ValueError(f"attention_type must be 'block_sparse' or 'original_full', got {config.attention_type!r}.")
    if config.block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {config.block_size}.")
    if config.window_blocks < 1 or config.window_blocks % 2 == 0:
        raise ValueError(
            f"window_blocks must be a positive odd number of blocks (the query block plus the same "
            f"number on each side), got {config.window_blocks}."
        )
    if config.num_random_blocks < 0 or config.num_global_tokens < 0:
        raise ValueError("num_random_blocks and num_global_tokens must be >= 0.")
    if config.random_plan not in ("reference", "uniform"):
        raise ValueError(f"random_plan must be 'reference' or 'uniform', got {config.random_plan!r}.")
    if config.attention_backend not in ("auto", "gather", "dense", "flex"):
        raise ValueError(
            f"attention_backend must be one of 'auto', 'gather', 'dense', 'flex', got {config.attention_backend!r}."
        )


def refuse_unsupported(config, model: str, chunked_feed_forward: bool = False) -> None:
    """transformers' generic flags no longbird model implements (`pruned_heads`), and
    `chunk_size_feed_forward` unless `model` chunks its feed-forward layers: refused, not ignored."""
    pruned = config.__dict__.get("pruned_heads")
    if pruned:
        raise ValueError(
            f"pruned_heads={pruned!r} is not supported ({model} cannot prune attention heads); pass pruned_heads={{}} "
            "or leave it out."
        )
    if config.chunk_size_feed_forward and not chunked_feed_forward:
        raise ValueError(
            f"chunk_size_feed_forward={config.chunk_size_feed_forward} is not supported ({model} runs its "
            "feed-forward layers unchunked); pass chunk_size_feed_forward=0 or leave it out."
        )


@strict
class BigBirdConfig(AcceptsReferenceConfig, PreTrainedConfig):
    r"""Configuration of a longbird BigBird encoder.

    Every field of transformers' `BigBirdConfig` keeps its name, default and meaning, so a
    `config.json` written by `transformers.BigBirdModel.save_pretrained` loads as is. Added:

    num_global_tokens (`int`, defaults to 0):
        BigBird-ETC: this many extra learned global tokens are put in front of the sequence; they
        see and are seen by every token. 0 gives BigBird-ITC (first and last block global).
    window_blocks (`int`, defaults to 3):
        Width of the sliding window in blocks (odd: the query block and `(w - 1) / 2` on each side).
    random_plan (`str`, defaults to `"reference"`):
        `"reference"` draws random blocks exactly as transformers/the original TF code do (same
        blocks for layer i), `"uniform"` draws them from the whole sequence. The reference plan
        exists only for its own layout (ITC, `window_blocks=3`); other layouts draw uniformly.
    attention_backend (`str`, defaults to `"auto"`):
        Executor of the block-sparse graph: `"auto"`, `"gather"`, `"dense"` or `"flex"`.

    decoder_layout (`str`, defaults to `"standard"`):
        A decoder with cross-attention, given `encoder_hidden_states`: `"standard"` runs causal
        self-attention, then cross-attention (BERT's decoder, the Transformer's). `"transformers"`
        reproduces transformers' BigBird (up to 5.24 at least), whose first attention then attends
        to the encoder states too, so decoder tokens never see each other; checkpoints trained with
        it need it, and a transformers `big_bird` decoder config with cross-attention loads with it.

    As in transformers, `is_decoder=True` makes self-attention causal (it needs
    `attention_type="original_full"`: block-sparse attention is bidirectional) and
    `add_cross_attention=True` adds cross-attention to `encoder_hidden_states` (the decoder of an
    `EncoderDecoderModel`). Flags transformers accepts that this model cannot honour
    (`pruned_heads`, a relative `position_embedding_type`, `is_encoder_decoder`, ...) raise a
    `ValueError` instead of being ignored (`check`).
    """

    model_type = "longbird_bigbird"
    reference_model_type = "big_bird"  # transformers' own BigBird

    vocab_size: int = 50358
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    max_position_embeddings: int = 4096
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    sep_token_id: int | None = 66
    attention_type: str = "block_sparse"
    use_bias: bool = True
    rescale_embeddings: bool = False
    block_size: int = 64
    num_random_blocks: int = 3
    classifier_dropout: float | int | None = None
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    # longbird additions
    num_global_tokens: int = 0
    window_blocks: int = 3
    random_plan: str = "reference"
    attention_backend: str = "auto"
    decoder_layout: str = "standard"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.check()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        # Fields given to from_pretrained (e.g. attention_type="original_full" for a decoder) join the
        # dict before the config is built: transformers sets them afterwards, after `check` refused
        # the saved combination they were meant to fix.
        fields = {key: kwargs.pop(key) for key in list(kwargs) if key in cls.__dataclass_fields__}
        return super().from_dict({**config_dict, **fields}, **kwargs)

    @classmethod
    def from_reference(cls, config_dict: dict) -> dict:
        # a decoder with cross-attention saved by transformers' BigBird was trained with its layout
        if config_dict.get("add_cross_attention") and "decoder_layout" not in config_dict:
            config_dict = {**config_dict, "decoder_layout": "transformers"}
        return config_dict

    def check(self) -> None:
        """Reject settings no model can be built from, naming the field and the fix (ValueError)."""
        if self.is_heterogeneous:  # per_layer_config; first: it makes reading per-layer fields raise
            raise ValueError(
                "per_layer_config is not supported: every BigBird layer has the same settings; leave it out."
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); change one of them, e.g. num_attention_heads="
                f"{_divisor_near(self.hidden_size, self.num_attention_heads)}."
            )
        check_graph_options(self)
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not a name in transformers.activations.ACT2FN.")
        self.check_decoder()
        self.check_unsupported()

    def check_decoder(self) -> None:
        """The decoder flags (transformers' BigBird decoder: causal dense self-attention, optional
        cross-attention). Also run when a model is built: EncoderDecoderModel sets them on a config."""
        if self.add_cross_attention and not self.is_decoder:
            raise ValueError(
                "add_cross_attention=True needs is_decoder=True (cross-attention belongs to a decoder); pass "
                "BigBirdConfig(is_decoder=True, add_cross_attention=True, attention_type='original_full')."
            )
        if self.is_decoder and self.attention_type != "original_full":
            raise ValueError(
                f"is_decoder=True needs attention_type='original_full' (got {self.attention_type!r}): block-sparse "
                "attention is bidirectional and cannot be made causal or cached. Pass attention_type='original_full' "
                "(e.g. BigBirdForCausalLM.from_pretrained(path, attention_type='original_full'))."
            )
        if self.decoder_layout not in ("standard", "transformers"):
            raise ValueError(f"decoder_layout must be 'standard' or 'transformers', got {self.decoder_layout!r}.")
        if self.is_decoder and self.num_global_tokens:
            raise ValueError(
                f"is_decoder=True does not take num_global_tokens={self.num_global_tokens} (extra global tokens see "
                "the whole sequence, which a causal decoder must not); pass num_global_tokens=0."
            )

    def check_unsupported(self) -> None:
        """transformers' generic config flags this model does not implement: refused, not ignored."""
        extra = self.__dict__
        refuse_unsupported(self, "BigBird", chunked_feed_forward=True)
        if extra.get("position_embedding_type", "absolute") not in (None, "absolute"):
            raise ValueError(
                f"position_embedding_type={extra['position_embedding_type']!r} is not supported: BigBird has learned "
                "absolute position embeddings only; pass position_embedding_type='absolute' or leave it out."
            )
        if self.is_encoder_decoder:
            raise ValueError(
                "is_encoder_decoder=True is not supported: BigBird is an encoder or a decoder; build an "
                "encoder-decoder with transformers.EncoderDecoderModel(encoder=BigBirdModel(...), "
                "decoder=BigBirdForCausalLM(...)), or use BigBirdPegasusForConditionalGeneration."
            )
        cross_size = extra.get("cross_attention_hidden_size")
        if cross_size is not None and cross_size != self.hidden_size:
            raise ValueError(
                f"cross_attention_hidden_size={cross_size} is not supported: cross-attention takes encoder states of "
                f"hidden_size ({self.hidden_size}); leave it out (EncoderDecoderModel then projects the encoder's "
                "states to hidden_size)."
            )


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: abs(d - k))
