"""`python -m serve.autoscaling.simulate`: judge autoscaling policies on a replayed workload.

Replays the Mooncake conversation trace (R1-like output lengths by default) or a synthetic
multi-turn reasoning workload through our router onto modelled replicas, under three policies:

- `ours`: `TokenLoadPolicy` (KV, queued prefill, decode tokens, TTFT),
- `serve-default`: Ray Serve's `replica_queue_length_autoscaling_policy` with
  `target_ongoing_requests`,
- `fixed`: a fixed fleet of `--fixed` replicas.

Both adaptive policies are called exactly as Serve calls them, with an `AutoscalingContext`;
Serve's delays and bounds are applied around them. Reports SLO attainment (TTFT, mean inter-token
latency), replica-hours and streams cut by drain deadlines.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

from serve.autoscaling.fleet_sim import FleetConfig, FleetResult, Scaler, run_fleet
from serve.autoscaling.policy import TokenLoadPolicy
from serve.autoscaling.replica_model import ReplicaSpec, SimRequest
from serve.autoscaling.sim_router import CoreSimRouter
from serve.autoscaling.targets import ScalingTargets
from serve.autoscaling.workload import load_mooncake, synthetic_reasoning


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 5.0
    itl_s: float = 0.2  # mean inter-token latency of a request


@dataclass(frozen=True)
class Summary:
    policy: str
    requests: int
    ttft_ok: float
    itl_ok: float
    both_ok: float
    ttft_p50: float
    ttft_p99: float
    replica_hours: float
    peak_replicas: int
    cut: int

    def row(self) -> str:
        return (f"{self.policy:<14} {self.requests:>6} {self.ttft_ok:>7.1%} {self.itl_ok:>7.1%} "
                f"{self.both_ok:>7.1%} {self.ttft_p50:>8.2f} {self.ttft_p99:>8.2f} "
                f"{self.replica_hours:>8.2f} {self.peak_replicas:>5} {self.cut:>5}")


HEADER = (f"{'policy':<14} {'reqs':>6} {'TTFT ok':>7} {'ITL ok':>7} {'both':>7} "
          f"{'TTFT p50':>8} {'TTFT p99':>8} {'rep-h':>8} {'peak':>5} {'cut':>5}")


def _context(metrics: list[dict[str, float]], active: int, current: int, now: float,
             config: object | None = None) -> object:
    from ray.serve.config import AutoscalingContext

    ids = list(range(len(metrics)))
    names = {k for m in metrics for k in m}
    aggregated = {k: {i: m[k] for i, m in zip(ids, metrics, strict=True) if k in m}
                  for k in names}
    total = sum(m.get("running", 0.0) + m.get("waiting", 0.0) for m in metrics)
    return AutoscalingContext(
        deployment_id=None, deployment_name="EngineDeployment", app_name="r1serve",
        current_num_replicas=active, target_num_replicas=current, running_replicas=ids,
        total_num_requests=total, total_queued_requests=0.0, aggregated_metrics=aggregated,
        raw_metrics={}, capacity_adjusted_min_replicas=0, capacity_adjusted_max_replicas=10**6,
        policy_state={}, last_scale_up_time=None, last_scale_down_time=None,
        current_time=now, config=config)


def ours(targets: ScalingTargets) -> Scaler:
    policy = TokenLoadPolicy(**targets.__dict__)

    def scale(metrics: list[dict[str, float]], active: int, current: int, now: float) -> int:
        return policy(_context(metrics, active, current, now))[0]
    return scale


def serve_default(target_ongoing_requests: float) -> Scaler:
    from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
    from ray.serve.config import AutoscalingConfig

    config = AutoscalingConfig(target_ongoing_requests=target_ongoing_requests,
                               min_replicas=0, max_replicas=10**6)

    def scale(metrics: list[dict[str, float]], active: int, current: int, now: float) -> int:
        ctx = _context(metrics, active, current, now, config)
        return math.ceil(replica_queue_length_autoscaling_policy(ctx)[0])
    return scale


def fixed(n: int) -> Scaler:
    return lambda metrics, active, current, now: n


def summarize(policy: str, result: FleetResult, slo: Slo) -> Summary:
    reqs: list[SimRequest] = result.requests
    ttfts = sorted(r.ttft if r.ttft is not None else math.inf for r in reqs)
    ttft_ok = [r.ttft is not None and r.ttft <= slo.ttft_s and not r.cut for r in reqs]
    itl_ok = [not r.cut and (r.itl is None or r.itl <= slo.itl_s) for r in reqs]
    n = max(1, len(reqs))
    return Summary(
        policy, len(reqs), sum(ttft_ok) / n, sum(itl_ok) / n,
        sum(a and b for a, b in zip(ttft_ok, itl_ok, strict=True)) / n,
        ttfts[len(ttfts) // 2], ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        result.replica_seconds / 3600.0, max([c for _, c in result.timeline] + [0]),
        sum(r.cut for r in reqs))


def workload(args: argparse.Namespace) -> list[SimRequest]:
    if args.workload == "synthetic":
        return synthetic_reasoning(sessions=args.sessions, session_rate_per_s=args.session_rate,
                                   seed=args.seed)
    return load_mooncake(limit=args.limit, time_scale=args.time_scale,
                         r1_outputs=args.outputs == "r1", seed=args.seed)


def compare(requests: list[SimRequest], cfg: FleetConfig, targets: ScalingTargets,
            target_ongoing: float, fixed_n: int, slo: Slo, seed: int = 0) -> list[Summary]:
    """Run every policy on its own copy of the workload; one summary each."""
    policies: list[tuple[str, Scaler, int]] = [
        ("ours", ours(targets), cfg.initial_replicas),
        (f"serve-default@{target_ongoing:g}", serve_default(target_ongoing), cfg.initial_replicas),
        (f"fixed-{fixed_n}", fixed(fixed_n), fixed_n),
    ]
    out = []
    for name, scaler, initial in policies:
        reqs = [replace(r) for r in requests]
        c = replace(cfg, initial_replicas=initial, max_replicas=max(cfg.max_replicas, fixed_n))
        result = run_fleet(reqs, CoreSimRouter(seed=seed), c, scaler)
        out.append(summarize(name, result, slo))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", choices=["mooncake", "synthetic"], default="mooncake")
    p.add_argument("--outputs", choices=["trace", "r1"], default="r1",
                   help="mooncake: the trace's output lengths or R1-like ones")
    p.add_argument("--limit", type=int, default=4000, help="mooncake: first N requests")
    p.add_argument("--time-scale", type=float, default=0.5,
                   help="mooncake: arrival-rate multiplier (0.5 = half the trace's rate)")
    p.add_argument("--sessions", type=int, default=400, help="synthetic: chat sessions")
    p.add_argument("--session-rate", type=float, default=0.3, help="synthetic: sessions/s")
    p.add_argument("--initial", type=int, default=2)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=16)
    p.add_argument("--fixed", type=int, default=8)
    p.add_argument("--target-ongoing", type=float, default=32.0)
    p.add_argument("--host-cache-tokens", type=int, default=0)
    p.add_argument("--ttft-slo", type=float, default=5.0)
    p.add_argument("--itl-slo", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    requests = workload(args)
    cfg = FleetConfig(spec=ReplicaSpec(host_cache_tokens=args.host_cache_tokens),
                      initial_replicas=args.initial, min_replicas=args.min_replicas,
                      max_replicas=args.max_replicas)
    slo = Slo(args.ttft_slo, args.itl_slo)
    span = requests[-1].arrival - requests[0].arrival if requests else 0.0
    print(f"{len(requests)} requests over {span / 60:.1f} min ({args.workload}, "
          f"outputs={args.outputs if args.workload == 'mooncake' else 'r1'}); "
          f"SLO: TTFT <= {slo.ttft_s}s, mean ITL <= {slo.itl_s}s")
    print(HEADER)
    for s in compare(requests, cfg, ScalingTargets(), args.target_ongoing, args.fixed, slo,
                     args.seed):
        print(s.row())


if __name__ == "__main__":
    main()
