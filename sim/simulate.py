"""`python -m sim.simulate`: judge autoscaling policies on a replayed workload, beside the
fixed-fleet frontier.

    python -m sim.simulate [--trace mooncake|azure|synthetic] [--shape day|constant|recorded]
                           [--seeds 3] [--fixed 6:20:2] [--cold-start 300] [--jobs 2]

The requests come from the Mooncake conversation trace or the Azure conversation trace (with
R1-like output lengths by default), or a synthetic multi-turn reasoning workload. `--shape day`
replays a day of them (`sim.day_shape.DayShape`: a diurnal rate from a quarter of the peak to
the peak and back, with 5-minute bursts); `--shape constant` replays them at the peak rate, as
a Poisson process, for as long (steady load); `--shape recorded` replays the trace at its own
arrival times. Our router places them on modelled replicas (`sim.replica_model`) under:

- `ours`: `TokenLoadPolicy`, configured as `r1serve` configures it (`autoscaling_config`);
- `serve-default@N`: Ray Serve's `replica_queue_length_autoscaling_policy` at
  `target_ongoing_requests` N;
- `fixed-N` for each N of `--fixed`: the frontier a policy must beat.

Both adaptive policies are called exactly as Serve calls them, with an `AutoscalingContext`
whose `policy_state` carries over between ticks; Serve's delays and bounds apply around them.
Each run reports TTFT-SLO attainment (share of requests whose first token came within the
objective, not cut by a drain), mean-ITL attainment, replica-hours and streams cut; each
policy's replica-hours are set against the cheapest fixed fleet that reached the same
attainment. Over all seeds, the target line: our attainment, and our replica-hours against
the cheapest fixed fleet at 99% or more; on steady load, the fixed fleet of equal cost.
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

from serve.autoscaling.policy import TokenLoadPolicy
from serve.autoscaling.targets import ScalingTargets, autoscaling_config
from serve.engine.percentile import percentile
from sim.core_router import CoreSimRouter
from sim.day_shape import DayShape, day_of
from sim.fleet import Fleet, FleetConfig, FleetResult, FleetView, ScaleDecision, Scaler
from sim.replica_model import ReplicaSpec, SimRequest
from sim.workload import load_azure, load_mooncake, synthetic_reasoning

TARGET_ATTAINMENT = 0.99
# Requests per second at the day's peak: what 15-20 modelled 8xH200 replicas serve at 99%, so
# the fleet has sizes to choose between. Azure's prompts are a tenth of Mooncake's, so its
# streams hold less KV and a replica runs more of them.
PEAK_RATE = {"mooncake": 2.4, "azure": 8.0}


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 5.0
    itl_s: float = 0.2  # mean inter-token latency of a request


@dataclass(frozen=True)
class Summary:
    policy: str
    seed: int
    requests: int
    ttft_ok: int
    itl_ok: int
    both_ok: int
    ttft_p50: float
    ttft_p99: float
    replica_hours: float
    peak_replicas: int
    cut: int
    worst_hour: float = 1.0  # the lowest TTFT attainment of any hour's arrivals

    @property
    def attainment(self) -> float:
        return self.ttft_ok / max(1, self.requests)

    def row(self, versus: str = "") -> str:
        n = max(1, self.requests)
        return (f"{self.policy:<16} {self.requests:>6} {self.ttft_ok / n:>7.2%} "
                f"{self.itl_ok / n:>7.2%} {self.both_ok / n:>7.2%} {self.ttft_p50:>8.2f} "
                f"{self.ttft_p99:>8.2f} {self.worst_hour:>7.2%} {self.replica_hours:>8.2f} "
                f"{self.peak_replicas:>5} {self.cut:>5}  {versus}")


HEADER = (f"{'policy':<16} {'reqs':>6} {'TTFT ok':>7} {'ITL ok':>7} {'both':>7} "
          f"{'TTFT p50':>8} {'TTFT p99':>8} {'worst h':>7} {'rep-h':>8} {'peak':>5} "
          f"{'cut':>5}  "
          "rep-h against the cheapest fixed fleet as good")


def pooled(name: str, runs: list[Summary]) -> Summary:
    """Runs of one policy over several seeds as one: counts and hours summed."""
    return Summary(name, -1, sum(r.requests for r in runs), sum(r.ttft_ok for r in runs),
                   sum(r.itl_ok for r in runs), sum(r.both_ok for r in runs),
                   max(r.ttft_p50 for r in runs), max(r.ttft_p99 for r in runs),
                   sum(r.replica_hours for r in runs), max(r.peak_replicas for r in runs),
                   sum(r.cut for r in runs), min(r.worst_hour for r in runs))


# -- the policies, as Serve runs them --------------------------------------------------------

class ServePolicy:
    """A Serve autoscaling policy under replay: called with an `AutoscalingContext` built
    from the fleet, its `policy_state` carried from tick to tick."""

    def __init__(self, policy, config=None) -> None:
        self.policy, self.config = policy, config
        self.state: dict = {}

    def decide(self, view: FleetView, now: float) -> ScaleDecision:
        from ray.serve.config import AutoscalingContext

        ids = [str(i) for i in view.metrics]
        names = {k for m in view.metrics.values() for k in m}
        aggregated = {k: {str(i): m[k] for i, m in view.metrics.items() if k in m}
                      for k in names}
        ctx = AutoscalingContext(
            deployment_id=None, deployment_name="EngineDeployment", app_name="r1serve",
            current_num_replicas=view.serving, target_num_replicas=view.target,
            running_replicas=ids, total_num_requests=view.ongoing, total_queued_requests=0.0,
            aggregated_metrics=aggregated, raw_metrics={}, capacity_adjusted_min_replicas=0,
            capacity_adjusted_max_replicas=10**6, policy_state=dict(self.state),
            last_scale_up_time=None, last_scale_down_time=None, current_time=now,
            config=self.config)
        replicas, self.state = self.policy(ctx)
        draining = (self.state.get("r1serve") or {}).get("draining") or ()
        return ScaleDecision(math.ceil(replicas), frozenset(int(r) for r in draining))


class Fixed:
    def __init__(self, n: int) -> None:
        self.n = n

    def decide(self, view: FleetView, now: float) -> ScaleDecision:
        return ScaleDecision(self.n)


@dataclass(frozen=True)
class Setup:
    """What every policy's fleet shares: replicas, bounds, delays as `r1serve`'s config
    gives them (autoscaling and drain sections)."""

    spec: ReplicaSpec = field(default_factory=ReplicaSpec)
    initial_replicas: int = 2
    min_replicas: int = 1
    max_replicas: int = 24
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    drain_deadline_s: float = 600.0
    target_ongoing_requests: float = 32.0
    targets: tuple[tuple[str, float], ...] = ()  # overrides of ScalingTargets

    def fleet(self, initial: int, upscale_s: float, downscale_s: float) -> FleetConfig:
        return FleetConfig(spec=self.spec, initial_replicas=initial,
                           min_replicas=self.min_replicas, max_replicas=self.max_replicas,
                           upscale_delay_s=upscale_s, downscale_delay_s=downscale_s,
                           drain_deadline_s=self.drain_deadline_s)

    def policy(self, name: str) -> tuple[Scaler, FleetConfig]:
        if name == "ours":
            serve = autoscaling_config(
                ScalingTargets.from_dict(dict(self.targets)), min_replicas=self.min_replicas,
                max_replicas=self.max_replicas, upscale_delay_s=self.upscale_delay_s,
                downscale_delay_s=self.downscale_delay_s,
                drain_deadline_s=self.drain_deadline_s)
            policy = TokenLoadPolicy(**serve["policy"]["policy_kwargs"])
            return ServePolicy(policy), self.fleet(self.initial_replicas,
                                                   serve["upscale_delay_s"],
                                                   serve["downscale_delay_s"])
        if name.startswith("serve-default"):
            from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
            from ray.serve.config import AutoscalingConfig

            config = AutoscalingConfig(target_ongoing_requests=self.target_ongoing_requests,
                                       min_replicas=0, max_replicas=10**6)
            return (ServePolicy(replica_queue_length_autoscaling_policy, config),
                    self.fleet(self.initial_replicas, self.upscale_delay_s,
                               self.downscale_delay_s))
        n = int(name.removeprefix("fixed-"))
        return Fixed(n), replace(self.fleet(n, 0.0, 0.0), min_replicas=n,
                                 max_replicas=max(n, self.max_replicas))


# -- workloads ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    trace: str = "mooncake"  # mooncake | azure | synthetic
    shape: str = "day"  # day | constant | recorded
    outputs: str = "r1"  # r1 | trace
    day: DayShape = field(default_factory=DayShape)
    limit: int = 4000  # recorded: the trace's first N requests
    time_scale: float = 0.5  # recorded: arrival-rate multiplier
    sessions: int = 400  # synthetic
    session_rate: float = 0.3  # synthetic: sessions per second

    def requests(self, seed: int) -> list[SimRequest]:
        r1 = self.outputs == "r1"
        if self.trace == "synthetic":
            return synthetic_reasoning(sessions=self.sessions,
                                       session_rate_per_s=self.session_rate, seed=seed)
        if self.shape == "recorded":
            if self.trace == "azure":
                return [replace(r, arrival=r.arrival / self.time_scale)
                        for r in load_azure(limit=self.limit, r1_outputs=r1, seed=seed)]
            return load_mooncake(limit=self.limit, time_scale=self.time_scale, r1_outputs=r1,
                                 seed=seed)
        trace = (load_azure(r1_outputs=r1, seed=seed) if self.trace == "azure"
                 else load_mooncake(r1_outputs=r1, seed=seed))
        return day_of(trace, self.day, seed)

    def describe(self, n: int) -> str:
        if self.trace == "synthetic" or self.shape == "recorded":
            what = f"{self.trace} as recorded" + (
                f" at x{self.time_scale:g} its rate" if self.trace != "synthetic" else "")
        elif self.shape == "constant":
            what = (f"{self.trace} at a constant {self.day.peak_rate:g} req/s for "
                    f"{self.day.hours:g} h")
        else:
            what = (f"a {self.day.hours:g} h day of {self.trace} (peak {self.day.peak_rate:g} "
                    f"req/s, trough {self.day.trough_share:.0%} of it, {self.day.bursts} bursts "
                    f"x{self.day.burst_factor:g} for {self.day.burst_s:g} s)")
        return f"{n} requests: {what}, outputs {self.outputs}"


@dataclass(frozen=True)
class Job:
    workload: Workload
    setup: Setup
    policy: str
    seed: int
    slo: Slo


def run(job: Job) -> Summary:
    scaler, cfg = job.setup.policy(job.policy)
    result = Fleet(job.workload.requests(job.seed), CoreSimRouter(seed=job.seed), cfg,
                   scaler).run()
    return summarize(job.policy, job.seed, result, job.slo)


def summarize(policy: str, seed: int, result: FleetResult, slo: Slo) -> Summary:
    reqs = result.requests
    ttfts = sorted(r.ttft if r.ttft is not None else math.inf for r in reqs)
    ttft_ok = [r.ttft is not None and r.ttft <= slo.ttft_s and not r.cut for r in reqs]
    itl_ok = [not r.cut and (r.itl is None or r.itl <= slo.itl_s) for r in reqs]
    return Summary(
        policy, seed, len(reqs), sum(ttft_ok), sum(itl_ok),
        sum(a and b for a, b in zip(ttft_ok, itl_ok, strict=True)),
        percentile(ttfts, 0.5) if ttfts else 0.0, percentile(ttfts, 0.99) if ttfts else 0.0,
        result.replica_seconds / 3600.0, max([c for _, c in result.timeline] + [0]),
        sum(r.cut for r in reqs), worst_hour(reqs, ttft_ok))


def worst_hour(reqs: list[SimRequest], ok: list[bool], min_requests: int = 100) -> float:
    """The lowest TTFT attainment over the hours of arrivals (with enough requests to tell):
    an objective is kept hour by hour, not on a day's average."""
    hours: dict[int, list[int]] = {}
    for r, good in zip(reqs, ok, strict=True):
        tally = hours.setdefault(int(r.arrival // 3600), [0, 0])
        tally[0] += good
        tally[1] += 1
    shares = [good / n for good, n in hours.values() if n >= min_requests]
    return min(shares, default=1.0)


# -- reading the frontier ------------------------------------------------------------------------

def cheapest_as_good(frontier: list[Summary], attainment: float) -> Summary | None:
    """The fixed fleet with the fewest replica-hours whose attainment is at least as high."""
    good = [f for f in frontier if f.attainment >= attainment - 1e-12]
    return min(good, key=lambda f: f.replica_hours, default=None)


def equal_cost_attainment(frontier: list[Summary], hours: float) -> float | None:
    """The frontier's attainment at `hours` replica-hours, between its neighbouring fleets."""
    pts = sorted((f.replica_hours, f.attainment) for f in frontier)
    for (h0, a0), (h1, a1) in zip(pts, pts[1:], strict=False):
        if h0 <= hours <= h1:
            return a0 + (a1 - a0) * (hours - h0) / (h1 - h0) if h1 > h0 else max(a0, a1)
    return None


def versus(s: Summary, frontier: list[Summary]) -> str:
    if s.policy.startswith("fixed-"):
        return ""
    best = cheapest_as_good(frontier, s.attainment)
    if best is None:
        return "no fixed fleet tried is as good"
    return f"{s.replica_hours / best.replica_hours:.2f}x {best.policy} ({best.attainment:.2%})"


def verdict(ours: Summary, frontier: list[Summary], steady: bool) -> str:
    if steady:
        equal = equal_cost_attainment(frontier, ours.replica_hours)
        if equal is None:
            return (f"steady: ours {ours.attainment:.2%} at {ours.replica_hours:.2f} rep-h, "
                    "outside the fixed fleets tried")
        return (f"steady: ours {ours.attainment:.2%} against {equal:.2%} for a fixed fleet of "
                f"equal cost ({ours.replica_hours:.2f} rep-h): "
                + ("not worse" if ours.attainment >= equal - 1e-12 else "WORSE"))
    best = cheapest_as_good(frontier, TARGET_ATTAINMENT)
    if best is None:
        return f"target: no fixed fleet tried reached {TARGET_ATTAINMENT:.0%}"
    ratio = ours.replica_hours / best.replica_hours
    met = ours.attainment >= TARGET_ATTAINMENT and ratio <= 0.75
    return (f"target: ours {ours.attainment:.2%} at {ratio:.2f}x the replica-hours of "
            f"{best.policy} ({best.attainment:.2%}), the cheapest fixed fleet at >= "
            f"{TARGET_ATTAINMENT:.0%}: {'met' if met else 'NOT met'} (>= 99% at <= 0.75x)")


def starting_fleet(frontier: list[Summary], workload: Workload) -> int:
    """What a deployment that has run for days holds at the start of the replay: the fixed
    fleet that meets the target, cut to the trough's share of the load for a day."""
    names = {r.policy for r in frontier}
    pooled_frontier = [pooled(n, [r for r in frontier if r.policy == n]) for n in names]
    best = cheapest_as_good(pooled_frontier, TARGET_ATTAINMENT) or max(
        pooled_frontier, key=lambda r: r.attainment)
    n = int(best.policy.removeprefix("fixed-"))
    return max(1, math.ceil(n * workload.day.trough_share)) if workload.shape == "day" else n


def _fixed_range(text: str) -> list[int]:
    parts = [int(x) for x in text.split(":")]
    lo, hi, step = (parts + [1])[:3] if len(parts) > 1 else (parts[0], parts[0], 1)
    if lo < 1 or hi < lo or step < 1:
        raise argparse.ArgumentTypeError(f"--fixed {text!r}: want LOW:HIGH[:STEP], 1 <= LOW "
                                         "<= HIGH")
    return list(range(lo, hi + 1, step))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trace", choices=["mooncake", "azure", "synthetic"], default="mooncake")
    p.add_argument("--shape", choices=["day", "constant", "recorded"], default="day")
    p.add_argument("--outputs", choices=["trace", "r1"], default="r1",
                   help="the trace's output lengths or R1-like ones")
    p.add_argument("--day-hours", type=float, default=DayShape.hours)
    peaks = ", ".join(f"{k} {v:g}" for k, v in PEAK_RATE.items())
    p.add_argument("--peak-rate", type=float, default=None,
                   help=f"req/s at the day's peak (default: what ~15-20 modelled replicas "
                        f"serve: {peaks})")
    p.add_argument("--trough", type=float, default=DayShape.trough_share)
    p.add_argument("--bursts", type=int, default=DayShape.bursts)
    p.add_argument("--burst-factor", type=float, default=DayShape.burst_factor)
    p.add_argument("--limit", type=int, default=4000, help="recorded: the first N requests")
    p.add_argument("--time-scale", type=float, default=0.5, help="recorded: rate multiplier")
    p.add_argument("--cold-start", type=float, default=300.0, help="seconds to a new replica")
    p.add_argument("--initial", type=int, default=None,
                   help="replicas the adaptive policies start with (default: the trough's "
                        "share of the cheapest fixed fleet at >= 99%%, or all of it when "
                        "the load is steady)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=24)
    p.add_argument("--fixed", type=_fixed_range, default=_fixed_range("6:20:2"),
                   help="the fixed fleets of the frontier, LOW:HIGH[:STEP]")
    p.add_argument("--target-ongoing", type=float, default=32.0)
    p.add_argument("--host-cache-tokens", type=int, default=0)
    p.add_argument("--ttft-slo", type=float, default=5.0)
    p.add_argument("--itl-slo", type=float, default=0.2)
    p.add_argument("--seeds", type=int, default=1, help="seeds --seed, --seed+1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--policies", default="ours,serve-default",
                   help="comma-separated: ours, serve-default")
    args = p.parse_args(argv)

    constant = args.shape == "constant"
    workload = Workload(args.trace, args.shape, args.outputs,
                        DayShape(args.day_hours, args.peak_rate or PEAK_RATE.get(args.trace, 2.4),
                                 1.0 if constant else args.trough, 0 if constant else args.bursts,
                                 burst_factor=args.burst_factor),
                        args.limit, args.time_scale)
    slo = Slo(args.ttft_slo, args.itl_slo)
    setup = Setup(ReplicaSpec(host_cache_tokens=args.host_cache_tokens,
                              cold_start_s=args.cold_start),
                  args.initial or 1, args.min_replicas, args.max_replicas,
                  target_ongoing_requests=args.target_ongoing,
                  targets=(("ttft_p90_s", slo.ttft_s), ("ttft_p99_s", slo.ttft_s),
                           ("itl_s", slo.itl_s), ("cold_start_s", args.cold_start)))
    adaptive = [("serve-default" if p == "serve-default" else p)
                for p in args.policies.split(",") if p]
    names = [n if n != "serve-default" else f"serve-default@{args.target_ongoing:g}"
             for n in adaptive] + [f"fixed-{n}" for n in args.fixed]
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"{workload.describe(len(workload.requests(seeds[0])))}; cold start "
          f"{args.cold_start:g} s; SLO: TTFT <= {slo.ttft_s:g} s, mean ITL <= {slo.itl_s:g} s; "
          f"seeds {', '.join(map(str, seeds))}", flush=True)
    fixed = [n for n in names if n.startswith("fixed-")]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run, [Job(workload, setup, n, seed, slo)
                                      for seed in seeds for n in fixed]))
        if args.initial is None:  # the day starts at its trough, with the fleet it needs
            setup = replace(setup, initial_replicas=starting_fleet(results, workload))
        print(f"adaptive policies start with {setup.initial_replicas} replicas", flush=True)
        results += list(pool.map(run, [Job(workload, setup, n, seed, slo)
                                       for seed in seeds for n in names if n not in fixed]))
    by_seed = {s: [r for r in results if r.seed == s] for s in seeds}
    for seed, rows in by_seed.items():
        print(f"\nseed {seed}\n{HEADER}")
        frontier = [r for r in rows if r.policy.startswith("fixed-")]
        for r in rows:
            print(r.row(versus(r, frontier)))
    rows = [pooled(n, [r for r in results if r.policy == n]) for n in names]
    frontier = [r for r in rows if r.policy.startswith("fixed-")]
    print(f"\npooled over {len(seeds)} seed(s)\n{HEADER}")
    for r in rows:
        print(r.row(versus(r, frontier)))
    for r in rows:
        if r.policy == "ours":
            print(verdict(r, frontier, steady=args.shape != "day"))


if __name__ == "__main__":
    main()
