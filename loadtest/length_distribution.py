"""Token-length distributions for synthetic prompts and (heavy-tailed) reasoning outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

LengthKind = Literal["fixed", "uniform", "lognormal", "pareto"]


@dataclass(frozen=True)
class LengthDistribution:
    """A distribution of token counts, clipped to [`minimum`, `maximum`].

    - `fixed`: always `mean` (the bounds do not apply).
    - `uniform`: uniform on [`minimum`, `maximum`].
    - `lognormal`: median `mean`, log-space standard deviation `shape`.
    - `pareto`: Lomax (Pareto II) with tail index `shape` (> 1) scaled so the untruncated mean is
      `mean`; tail index 1.5 gives the long-tailed reasoning lengths R1 shows, where a few
      requests run to the 32K cap.
    """

    kind: LengthKind
    mean: int
    shape: float = 1.0
    minimum: int = 1
    maximum: int = 32768

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(f"length bounds must satisfy 1 <= min <= max, got "
                             f"{self.minimum}..{self.maximum}")
        if self.kind == "pareto" and self.shape <= 1.0:
            raise ValueError("a pareto length needs a tail index (shape) above 1 to have a mean")

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """`n` lengths drawn from `rng`."""
        if self.kind == "fixed":
            return [self.mean] * n
        if self.kind == "uniform":
            raw = rng.uniform(self.minimum, self.maximum + 1, n)
        elif self.kind == "lognormal":
            raw = rng.lognormal(np.log(self.mean), self.shape, n)
        else:
            scale = self.mean * (self.shape - 1.0)
            raw = rng.pareto(self.shape, n) * scale
        return [int(x) for x in np.clip(np.floor(raw), self.minimum, self.maximum)]
