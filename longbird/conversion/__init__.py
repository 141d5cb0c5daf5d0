"""Converters from other implementations' checkpoints (no TensorFlow needed: TF checkpoints are
read by the small reader in `tf_checkpoint`)."""

from .etc_tf import ConversionReport, convert_etc_tf_checkpoint
from .tf_checkpoint import list_tf_checkpoint, load_tf_checkpoint

__all__ = ["ConversionReport", "convert_etc_tf_checkpoint", "list_tf_checkpoint", "load_tf_checkpoint"]
