"""Replay the Mooncake conversation trace through routing algorithms onto modelled replicas.

    python -m benchmarks.router_replay [--requests 3000] [--start 0] [--windows 1] [--seeds 1]
                                       [--jobs 2] [--scenario 4:r1:gpu ...] [--explain]

Routers: ours (`RouterCore`), Ray Serve's PrefixCacheAffinityRouter algorithm (Ray's own
`PrefixTree`, match-rate threshold 0.1, imbalance threshold inf), smg's cache_aware algorithm
(cache_threshold 0.3, balance_abs_threshold 64, balance_rel_threshold 1.5), power of two
choices and round robin. All see the same `ReplicaModel` fleet (sim/).

Grid: 4 and 16 replicas x the trace's output lengths and R1-like ones x a prefix cache of GPU
memory alone and of GPU plus a host-memory tier. The replay takes `--windows` consecutive
windows of `--requests` requests from `--start`, each from cold caches (the trace holds 12,031:
`--windows 4` covers 12,000); arrivals are rescaled so each replica sees the same offered load
at either fleet size (R1-like outputs get a lower rate: each request decodes ~12x longer).
Reports prefix hit rate (cached prompt tokens / prompt tokens), TTFT p50/p99 and load imbalance
(max / mean replica busy time), each pooled over the windows. Pool several: in one window of
3,000 a handful of 60K-token prompts that hit or miss move the hit rate by tenths of a point.
The trace records arrivals on a 3-second clock; each request arrives at a moment of its tick
drawn from the seed (sim/workload.py), the same for every router. `--seeds N`
replays every window with seeds --seed, --seed+1, ... (arrivals within their ticks, the R1-like
output lengths and every router's random choices change), pools those too, and prints the
lowest and highest hit rate any one seed gave, and the standard error of their mean: a
difference between routers inside that range is not a finding. The spread is wide: where
caches evict, moving arrivals within the trace's own resolution moves every router's hit rate
by tenths of a point. `--scenario` replays only some of the grid, so a close one can take more
seeds. Each scenario that replays ours beside others ends with the target line: ours' hit rate
less the best other's, with the standard error of the seeds' paired differences (a difference
under two of them is a tie), and whether ours' TTFT p99 is below every other's. `--explain`
adds, for each router, where its hit rate was lost: the prompt tokens some replica's cache held
when each request was routed, those the chosen replica held, and those found when its prefill
began (the hit rate). The first gap is what routing gave away; the second what was evicted
while the request queued, less what requests queued ahead of it brought in.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from serve.engine.percentile import percentile
from serve.routing.knobs import RouterKnobs
from sim.baseline_routers import PowerOfTwo, RayPrefixAffinity, RoundRobin, SmgCacheAware
from sim.core_router import CoreSimRouter
from sim.fleet import Fleet, FleetConfig, SimRouter
from sim.replica_model import ReplicaModel, ReplicaSpec, SimRequest
from sim.workload import load_mooncake

TRACE_RATE = 12031 / 3537.0  # the conversation trace's mean arrivals per second
PER_REPLICA_RATE = {"trace": 1.2, "r1": 0.2}  # offered requests/s per replica
GPU_KV_TOKENS = 600_000
HOST_TOKENS = 8_000_000


class Explained:
    """A router under replay, and what the fleet's caches truly held of each prompt it routed:
    the longest prefix on any replica, and on the replica it chose."""

    def __init__(self, router: SimRouter) -> None:
        self.router = router
        self.held_anywhere = 0
        self.held_where_sent = 0

    def route(self, req: SimRequest, reps: Sequence[ReplicaModel], now: float) -> ReplicaModel:
        held = {r.idx: r.held_tokens(req.blocks, req.prompt_tokens) for r in reps}
        chosen = self.router.route(req, reps, now)
        self.held_anywhere += max(held.values())
        self.held_where_sent += held[chosen.idx]
        return chosen

    def on_report(self, replica: ReplicaModel, now: float) -> None:
        self.router.on_report(replica, now)

    def on_finish(self, req: SimRequest, replica: ReplicaModel, now: float) -> None:
        self.router.on_finish(req, replica, now)

    def set_draining(self, replicas: frozenset[int], now: float) -> None:
        self.router.set_draining(replicas, now)


ROUTERS = {"ours": CoreSimRouter, "ray-prefix-affinity": RayPrefixAffinity,
           "smg-cache-aware": SmgCacheAware, "power-of-two": PowerOfTwo,
           "round-robin": RoundRobin}


@dataclass(frozen=True)
class Scenario:
    replicas: int
    outputs: str  # "trace" | "r1"
    cache: str  # "gpu" | "gpu+host"

    def label(self) -> str:
        return f"{self.replicas:>2} replicas, {self.outputs:<5} outputs, {self.cache:<8} cache"

    def key(self) -> str:
        return f"{self.replicas}:{self.outputs}:{self.cache}"


SCENARIOS = tuple(Scenario(n, o, c) for n, o, c in
                  itertools.product((4, 16), ("trace", "r1"), ("gpu", "gpu+host")))


@dataclass(frozen=True)
class Sample:
    """What one replay of one window left: the sums and samples the figures pool over."""

    router: str
    seed: int
    prompt_tokens: int
    cached_tokens: int
    ttfts: tuple[float, ...]
    busy_s: tuple[float, ...]  # per replica
    held_anywhere: int = 0  # prompt tokens some replica held at routing (--explain)
    held_where_sent: int = 0  # prompt tokens the chosen replica held at routing (--explain)


@dataclass(frozen=True)
class Row:
    router: str
    hit_rate: float
    ttft_p50: float
    ttft_p99: float
    imbalance: float

    @classmethod
    def pooled(cls, samples: Sequence[Sample]) -> Row:
        """The figures over several windows: token and busy-time sums, all TTFTs together."""
        ttft = sorted(t for s in samples for t in s.ttfts)
        busy = [sum(b) for b in zip(*(s.busy_s for s in samples), strict=True)]
        return cls(samples[0].router, hit_rate(samples), percentile(ttft, 0.5),
                   percentile(ttft, 0.99),
                   max(busy) / (sum(busy) / len(busy)))


def share(samples: Sequence[Sample], tokens: str) -> float:
    """The samples' `tokens` field over their prompt tokens, summed: not a mean of rates."""
    return (sum(getattr(s, tokens) for s in samples)
            / sum(s.prompt_tokens for s in samples))


def hit_rate(samples: Sequence[Sample]) -> float:
    """Cached prompt tokens over prompt tokens."""
    return share(samples, "cached_tokens")


def explained(samples: Sequence[Sample]) -> str:
    """Held anywhere, held where sent and found at prefill, each over all prompt tokens."""
    return (f"{share(samples, 'held_anywhere'):>8.2%} {share(samples, 'held_where_sent'):>10.2%} "
            f"{hit_rate(samples):>10.2%}")


def hit_rate_by_seed(samples: Sequence[Sample]) -> dict[int, float]:
    """Each seed's hit rate, pooled over its windows."""
    return {seed: hit_rate([s for s in samples if s.seed == seed])
            for seed in sorted({s.seed for s in samples})}


def seed_spread(samples: Sequence[Sample]) -> str:
    """The lowest and highest of the seeds' hit rates, and the standard error of their mean."""
    rates = list(hit_rate_by_seed(samples).values())
    error = statistics.stdev(rates) / len(rates) ** 0.5
    return f"{min(rates):>7.2%}-{max(rates):.2%} {error:>6.2%}"


def against_best(ours: Sequence[Sample], others: dict[str, Sequence[Sample]]) -> str:
    """The issue's target for one scenario: ours' hit rate against the best other router's,
    and ours' TTFT p99 against every other's. With several seeds the hit-rate difference
    carries the standard error of its seeds' paired differences (the same seed gives every
    router the same arrivals), and a difference under two of them is called a tie."""
    mine = Row.pooled(ours)
    rows = {name: Row.pooled(s) for name, s in others.items()}
    best = max(rows, key=lambda name: rows[name].hit_rate)
    gap = mine.hit_rate - rows[best].hit_rate
    said = f"hit rate {gap * 100:+.2f} points against {best}"
    by_seed, theirs = hit_rate_by_seed(ours), hit_rate_by_seed(others[best])
    paired = [by_seed[seed] - theirs[seed] for seed in by_seed if seed in theirs]
    if len(paired) > 1:
        error = statistics.stdev(paired) / len(paired) ** 0.5
        verdict = ("ahead" if gap > 2 * error else "behind" if gap < -2 * error
                   else "a tie within 2 s.e.")
        said += f", s.e. {error * 100:.2f} ({verdict})"
    nearest = min(rows, key=lambda name: rows[name].ttft_p99)
    lead = rows[nearest].ttft_p99 - mine.ttft_p99
    return (f"{said}; TTFT p99 {'lowest' if lead > 0 else 'not lowest'}, "
            f"{abs(lead):.2f}s {'below' if lead > 0 else 'above'} {nearest}")


@dataclass(frozen=True)
class Job:
    """One router on one scenario: what a worker process replays."""

    scenario: Scenario
    router: str
    requests: int
    start: int
    seed: int
    knobs: dict[str, float]
    explain: bool = False


def run_one(job: Job) -> tuple[Scenario, Sample]:
    sc, router_name, seed = job.scenario, job.router, job.seed
    scale = PER_REPLICA_RATE[sc.outputs] * sc.replicas / TRACE_RATE
    reqs = load_mooncake(limit=job.requests, skip=job.start, time_scale=scale,
                         r1_outputs=sc.outputs == "r1", seed=seed)
    spec = ReplicaSpec(kv_capacity_tokens=GPU_KV_TOKENS,
                       host_cache_tokens=HOST_TOKENS if sc.cache == "gpu+host" else 0)
    cfg = FleetConfig(spec=spec, initial_replicas=sc.replicas, report_period_s=2.0)
    router = (CoreSimRouter(RouterKnobs.from_dict(job.knobs), seed=seed)
              if router_name == "ours"
              else ROUTERS[router_name](seed=seed))
    watched = Explained(router) if job.explain else None
    result = Fleet(reqs, watched or router, cfg).run()
    held = (watched.held_anywhere, watched.held_where_sent) if watched else (0, 0)
    return sc, Sample(router_name, seed, sum(r.prompt_tokens for r in result.requests),
                      sum(r.cached_tokens for r in result.requests),
                      tuple(r.ttft for r in result.requests if r.ttft is not None),
                      tuple(result.busy_seconds), *held)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=3000, help="N requests of the trace")
    p.add_argument("--start", type=int, default=0,
                   help="the first window's first request (0: the trace's start)")
    p.add_argument("--windows", type=int, default=1,
                   help="consecutive windows of --requests, each from cold caches, pooled")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1,
                   help="replay each window with N seeds from --seed, pooled; prints the spread")
    p.add_argument("--routers", default=",".join(ROUTERS))
    p.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="override one of our router's knobs (serve.routing.RouterKnobs)")
    p.add_argument("--scenario", action="append", default=[], metavar="N:OUTPUTS:CACHE",
                   help="replay only this part of the grid, e.g. 4:r1:gpu (default: all)")
    p.add_argument("--explain", action="store_true",
                   help="also print where each router's hit rate was lost (module docstring)")
    args = p.parse_args(argv)
    by_key = {sc.key(): sc for sc in SCENARIOS}
    if unknown := [k for k in args.scenario if k not in by_key]:
        p.error(f"--scenario: unknown {', '.join(unknown)}; choose from {', '.join(by_key)}")
    scenarios = [by_key[k] for k in dict.fromkeys(args.scenario)] or list(SCENARIOS)
    knobs = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.knob)}
    RouterKnobs.from_dict(knobs)  # an unknown knob fails here, before the long run
    routers = args.routers.split(",")
    if unknown := [r for r in routers if r not in ROUTERS]:
        p.error(f"--routers: unknown {', '.join(unknown)}; choose from {', '.join(ROUTERS)}")
    if args.requests < 1:
        p.error(f"--requests {args.requests}: replay at least 1 request")
    if args.windows < 1:
        p.error(f"--windows {args.windows}: replay at least 1 window")
    if args.seeds < 1:
        p.error(f"--seeds {args.seeds}: replay with at least 1 seed")
    starts = [args.start + w * args.requests for w in range(args.windows)]
    if not load_mooncake(skip=starts[-1], limit=1):
        where = (f"--start {args.start}" if args.windows == 1
                 else f"--windows {args.windows} (the last from request {starts[-1]})")
        p.error(f"{where} is past the trace's last request; it holds {len(load_mooncake())}")
    seeds = range(args.seed, args.seed + args.seeds)
    jobs = [Job(sc, r, args.requests, start, seed, knobs, args.explain) for sc in scenarios
            for r in routers for start in starts for seed in seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        samples = list(pool.map(run_one, jobs))
    pooled = f" in {args.windows} windows from cold caches" if args.windows > 1 else ""
    if args.seeds > 1:
        pooled += f", seeds {seeds[0]}-{seeds[-1]}"
    print(f"Mooncake conversation trace, requests {args.start}-{starts[-1] + args.requests - 1}"
          f"{pooled}; GPU prefix cache {GPU_KV_TOKENS:,} tokens/replica, "
          f"host tier {HOST_TOKENS:,}")
    for sc in scenarios:
        print(f"\n{sc.label()}")
        heading = f" {'seed low-high':>15} {'s.e.':>6}" if args.seeds > 1 else ""
        print(f"  {'router':<20} {'hit rate':>8} {'TTFT p50':>9} {'TTFT p99':>9} {'imbal':>6}"
              f"{heading}")
        by_router = {r: [s for c, s in samples if c == sc and s.router == r] for r in routers}
        for mine in by_router.values():
            row = Row.pooled(mine)
            spread = f" {seed_spread(mine)}" if args.seeds > 1 else ""
            print(f"  {row.router:<20} {row.hit_rate:>8.2%} {row.ttft_p50:>8.2f}s "
                  f"{row.ttft_p99:>8.2f}s {row.imbalance:>6.2f}{spread}")
        if "ours" in by_router and len(by_router) > 1:
            others = {r: s for r, s in by_router.items() if r != "ours"}
            print(f"  target, ours: {against_best(by_router['ours'], others)}")
        if args.explain:
            print(f"  {'prompt tokens held':<20} {'anywhere':>8} {'where sent':>10} "
                  f"{'at prefill':>10}")
            for router, mine in by_router.items():
                print(f"  {router:<20} {explained(mine)}")


if __name__ == "__main__":
    main()
