"""Rotary position embedding with YaRN scaling, as DeepSeek-V3 configures it, or Llama 3's."""

from __future__ import annotations

import math

import torch

from serve.engine.reference.model_args import RopeArgs


def _yarn_inv_freq(r: RopeArgs, dim: int) -> torch.Tensor:
    """Inverse frequencies blended between interpolation and extrapolation (YaRN, sec. 3.2)."""
    pos_freqs = r.theta ** (torch.arange(0, dim, 2, device="cpu").to(dtype=torch.float) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (r.factor * pos_freqs)

    def correction_dim(rotations: float) -> float:
        orig = r.original_max_position_embeddings
        return (dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(r.theta))

    low, high = correction_dim(r.beta_fast), correction_dim(r.beta_slow)
    if r.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    dims = torch.arange(dim // 2, dtype=torch.float32, device="cpu")
    ramp = torch.clamp((dims - low) / (high - low), 0, 1)
    keep = 1 - ramp  # share of each frequency kept unscaled
    return interpolation * (1 - keep) + extrapolation * keep


def _llama3_inv_freq(r: RopeArgs, dim: int) -> torch.Tensor:
    """Llama 3.1's scaling: low frequencies divided by `factor`, high ones kept, a smooth blend
    between the two wavelength bounds."""
    inv_freq = 1.0 / (r.theta ** (torch.arange(0, dim, 2, device="cpu").float() / dim))
    orig = r.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > orig / r.low_freq_factor, inv_freq / r.factor, inv_freq)
    smooth = (orig / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor)
    blended = (1 - smooth) * scaled / r.factor + smooth * scaled
    medium = (wavelen >= orig / r.high_freq_factor) & (wavelen <= orig / r.low_freq_factor)
    return torch.where(medium, blended, scaled)


class RotaryEmbedding:
    """cos/sin for given positions; applied to the rope half of queries and keys."""

    def __init__(self, rope: RopeArgs, dim: int) -> None:
        if rope.rope_type == "yarn":
            self.inv_freq = _yarn_inv_freq(rope, dim)
        elif rope.rope_type == "llama3":
            self.inv_freq = _llama3_inv_freq(rope, dim)
        else:
            exponents = torch.arange(0, dim, 2, device="cpu").float() / dim
            self.inv_freq = 1.0 / (rope.theta**exponents)
        self.scale = rope.cos_sin_scale
        self.interleave = rope.interleave

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [T] -> cos, sin [T, dim/2] (float32)."""
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        return freqs.cos() * self.scale, freqs.sin() * self.scale

    def apply(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate x [T, ..., dim]; cos/sin [T, dim/2] broadcast over the middle dims. The result
        has x's dtype.

        Interleaved checkpoints pair dims (0,1), (2,3), ...; the output puts all first members
        of the pairs before all second members. Queries and keys get the same layout, so their
        dot products are those of the paper.
        """
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[-1],)
        cos, sin = cos.view(shape), sin.view(shape)
        if self.interleave:
            x1, x2 = x[..., 0::2], x[..., 1::2]
        else:
            half = x.shape[-1] // 2
            x1, x2 = x[..., :half], x[..., half:]
        # Rotated in float32 (cos/sin are), returned in x's dtype: a bf16 model stays bf16.
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
