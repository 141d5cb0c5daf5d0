"""`LayerNorm`: `nn.LayerNorm` that also trains in float16 on CPU.

BigBird and ETC use `layer_norm_eps=1e-12`. torch's CPU kernel normalises in float32 but saves the
inverse standard deviation for backward in the input's dtype; for a row with (almost) no variance
(a padding position whose state is zeroed, a head's input at initialisation) that is
`1 / sqrt(1e-12) = 1e6`, beyond float16's 65504: it is saved as inf and the backward turns it into
NaN gradients (0 * inf). bfloat16 (range as float32's) and CUDA (statistics kept in float32) are
unaffected, and so is autocast (LayerNorm then sees the float32 residual stream). Such a module
runs in float32 when that can happen and returns float16 again; the weights stay as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: an eps below this can make 1 / sqrt(var + eps) overflow float16 (max 65504)
_FP16_SAFE_EPS = 1.0 / torch.finfo(torch.float16).max ** 2


class LayerNorm(nn.LayerNorm):
    """`nn.LayerNorm` (same weights, same names) computed in float32 for a float16 CPU input when its
    eps is small enough for the saved statistics to overflow float16."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dtype != torch.float16 or hidden.device.type != "cpu" or self.eps >= _FP16_SAFE_EPS:
            return super().forward(hidden)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(hidden.float(), self.normalized_shape, weight, bias, self.eps).to(hidden.dtype)
