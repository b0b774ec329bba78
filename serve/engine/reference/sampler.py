"""Turn one engine step's logits into next tokens.

Per row: greedy when temperature is 0; otherwise temperature, then top-k, top-p and min-p
filters, then a random draw. Filters run batched over the rows that use them, with
per-row parameters as tensors, so a step costs a handful of vectorised ops whatever the mix.

Reproducibility: a seeded row's random number comes from its own generator, and every op is
row-independent, so the same seed gives the same tokens whatever shares the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from serve.engine.base import SamplingParams, TokenLogprob

# Below this temperature logits/T overflows float32 for ordinary logits; treat it as greedy,
# which is what such a temperature means anyway.
_GREEDY_TEMPERATURE = 1e-5
# Top-p first looks for the nucleus among this many most likely tokens (see `_apply_top_p`).
_NUCLEUS_CANDIDATES = 1024


@dataclass(frozen=True)
class SampleOutput:
    """The next token of every row, and its logprobs where the row asked (else None)."""

    token_ids: list[int]
    logprobs: list[TokenLogprob | None]


def sample(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
) -> SampleOutput:
    """Pick one token per row of `logits` ([B, V] float32) under that row's `params`.

    Rows with a generator draw from it (per-request seed); rows without one share torch's
    default generator. Logprobs, when a row asks, come from `log_softmax` of the raw logits,
    before temperature and filters, as OpenAI and vLLM report them by default.
    """
    batch = logits.shape[0]
    assert len(params) == batch == len(generators), "one SamplingParams and generator per row"
    greedy = [p.temperature < _GREEDY_TEMPERATURE for p in params]
    wants_logprobs = any(p.logprobs for p in params)
    if all(greedy) and not wants_logprobs:
        return SampleOutput(logits.argmax(dim=-1).tolist(), [None] * batch)

    token_ids = [0] * batch
    greedy_rows = [i for i in range(batch) if greedy[i]]
    random_rows = [i for i in range(batch) if not greedy[i]]
    if greedy_rows:
        picks = _take_rows(logits, greedy_rows).argmax(dim=-1).tolist()
        for i, token in zip(greedy_rows, picks, strict=True):
            token_ids[i] = token
    if random_rows:
        picks = _sample_random(
            _take_rows(logits, random_rows),
            [params[i] for i in random_rows],
            [generators[i] for i in random_rows],
        )
        for i, token in zip(random_rows, picks, strict=True):
            token_ids[i] = token
    logprobs = _logprobs(logits, params, token_ids) if wants_logprobs else [None] * batch
    return SampleOutput(token_ids, logprobs)


def _sample_random(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """Temperature, filters and one draw for rows that all sample.

    Filters after top-k zero probabilities rather than renormalise: the draw works on
    unnormalised weights, and min-p compares to the row's maximum, which zeroing keeps.
    """
    temperature = torch.tensor([p.temperature for p in params], dtype=logits.dtype)
    scaled = logits / temperature.unsqueeze(1)  # a fresh tensor: top-k may edit it in place
    _apply_top_k(scaled, [p.top_k for p in params])
    probs = scaled.softmax(dim=-1)
    _apply_top_p(probs, [p.top_p for p in params])
    _apply_min_p(probs, [p.min_p for p in params])
    return _draw(probs, generators)


def _apply_top_k(scaled: torch.Tensor, top_k: Sequence[int]) -> None:
    """Mask (to -inf) every logit below each row's k-th largest; ties at the cut are kept."""
    vocab = scaled.shape[1]
    rows = [i for i, k in enumerate(top_k) if 0 < k < vocab]
    if not rows:
        return
    sub = _take_rows(scaled, rows)
    ks = torch.tensor([top_k[i] - 1 for i in rows]).unsqueeze(1)
    top_values = sub.topk(max(top_k[i] for i in rows), dim=-1).values  # sorted, descending
    sub.masked_fill_(sub < top_values.gather(1, ks), float("-inf"))
    _put_rows(scaled, rows, sub)


def _apply_top_p(probs: torch.Tensor, top_p: Sequence[float]) -> None:
    """Zero, per row, all but the most likely tokens whose total probability first reaches
    top_p (the most likely token always stays; ties at the cut are kept).

    A full sort of a 129K vocabulary costs far more than the rest of sampling, and the nucleus
    almost always lies within the top `_NUCLEUS_CANDIDATES`; only rows where it does not are
    sorted in full. Which path a row takes depends on that row alone, so seeded rows stay
    reproducible in any batch.
    """
    rows = [i for i, p in enumerate(top_p) if p < 1.0]
    if not rows:
        return
    sub = _take_rows(probs, rows)
    target = torch.tensor([top_p[i] for i in rows], dtype=probs.dtype).unsqueeze(1)
    floor, fits = _nucleus_floor(sub, target, min(_NUCLEUS_CANDIDATES, sub.shape[1]))
    if not bool(fits.all()):
        wide = (~fits).nonzero().squeeze(1)
        floor[wide] = _nucleus_floor(sub[wide], target[wide], sub.shape[1])[0]
    sub.masked_fill_(sub < floor, 0.0)
    _put_rows(probs, rows, sub)


def _nucleus_floor(
    probs: torch.Tensor, target: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's smallest nucleus probability ([n, 1]), judged from its k most likely tokens,
    and whether those k tokens reach the target mass ([n])."""
    top = probs.topk(k, dim=-1).values  # sorted, descending
    mass = top.cumsum(dim=-1)
    kept = ((mass - top) < target).sum(dim=-1, keepdim=True).clamp_(min=1)
    return top.gather(1, kept - 1), mass[:, -1] >= target.squeeze(1)


def _apply_min_p(probs: torch.Tensor, min_p: Sequence[float]) -> None:
    """Zero tokens whose probability is below min_p times the row's largest probability."""
    rows = [i for i, m in enumerate(min_p) if m > 0.0]
    if not rows:
        return
    sub = _take_rows(probs, rows)
    scale = torch.tensor([min_p[i] for i in rows], dtype=probs.dtype).unsqueeze(1)
    sub.masked_fill_(sub < sub.amax(dim=-1, keepdim=True) * scale, 0.0)
    _put_rows(probs, rows, sub)


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> list[int]:
    """One token per row from unnormalised weights `probs`, by inverse CDF.

    Each row costs one uniform number, from its own generator when it has one and from torch's
    default generator otherwise. (`torch.multinomial` draws one exponential per vocabulary
    entry, which on CPU dominates a whole step at a 129K vocabulary.) The CDF is accumulated in
    float64 so tail tokens keep their share.
    """
    uniform = torch.empty(len(generators), 1, dtype=torch.float64)
    shared = [i for i, g in enumerate(generators) if g is None]
    if shared:
        uniform[shared] = torch.rand(len(shared), 1, dtype=torch.float64)
    for i, generator in enumerate(generators):
        if generator is not None:
            uniform[i] = torch.rand(1, dtype=torch.float64, generator=generator)
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    tokens = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True)
    # u * total can round up to total (odds ~2**-53); such a draw takes the most likely token.
    past_end = tokens >= probs.shape[1]
    if bool(past_end.any()):
        tokens = torch.where(past_end, probs.argmax(dim=-1, keepdim=True), tokens)
    return tokens.squeeze(1).tolist()


def _logprobs(
    logits: torch.Tensor, params: Sequence[SamplingParams], token_ids: Sequence[int]
) -> list[TokenLogprob | None]:
    """The chosen token's raw logprob and the top alternatives, for rows that asked."""
    out: list[TokenLogprob | None] = [None] * len(params)
    rows = [i for i, p in enumerate(params) if p.logprobs]
    logprobs = _take_rows(logits, rows).float().log_softmax(dim=-1)
    chosen = torch.tensor([token_ids[i] for i in rows]).unsqueeze(1)
    chosen_logprobs = logprobs.gather(1, chosen).squeeze(1).tolist()
    num_top = min(max(params[i].top_logprobs for i in rows), logprobs.shape[1])
    top_values: list[list[float]] = [[] for _ in rows]
    top_ids: list[list[int]] = [[] for _ in rows]
    if num_top > 0:
        top = logprobs.topk(num_top, dim=-1)  # sorted, descending
        top_values, top_ids = top.values.tolist(), top.indices.tolist()
    for j, i in enumerate(rows):
        n = params[i].top_logprobs
        alternatives = tuple(zip(top_ids[j][:n], top_values[j][:n], strict=True))
        out[i] = TokenLogprob(token_ids[i], chosen_logprobs[j], alternatives)
    return out


def _take_rows(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """`x[rows]`, without the copy when `rows` is every row (callers may edit it in place)."""
    return x if len(rows) == x.shape[0] else x[rows]


def _put_rows(x: torch.Tensor, rows: list[int], sub: torch.Tensor) -> None:
    """Write `sub` back into `x[rows]`; a no-op when `_take_rows` returned `x` itself."""
    if sub is not x:
        x[rows] = sub
