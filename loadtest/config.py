"""The run configuration a user writes on the command line, validated once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loadtest.arrival import Arrival, ConcurrencyArrival, RateArrival, TraceArrival
from loadtest.endpoint import Endpoint, normalize_base_url
from loadtest.length_distribution import LengthDistribution, LengthKind
from loadtest.schedule import Schedule
from loadtest.slo import Slo
from loadtest.sweep import RateSearch
from loadtest.workloads import (
    AzureTrace,
    MooncakeTrace,
    MultiTurnConversations,
    PromptFile,
    SyntheticReasoning,
    Workload,
)
from loadtest.workloads.mooncake import TICK_S

WorkloadKind = Literal["synthetic", "conversation", "mooncake", "azure", "file"]


class LoadTestConfig(BaseModel):
    """Everything that defines a load test; stored verbatim in result.json (minus the key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Server root, e.g. http://127.0.0.1:8000 (a /v1 suffix is ok)")
    model: str = Field("", description="Model name; empty takes the server's first model")
    api_key: str | None = Field(None, exclude=True, description="Bearer token (never saved)")
    extra_body: dict = Field(default_factory=dict, description="Merged into every request body")
    ignore_eos: bool = Field(False, description="Ask the server to generate max_tokens exactly")
    request_timeout_s: float = Field(3600.0, gt=0, description="Per-request timeout")
    metrics_url: str | None = Field(None, description="Prometheus URL; default <url>/metrics")

    workload: WorkloadKind = Field("synthetic", description="What to send")
    trace: Path | None = Field(None, description="Trace or prompt file for mooncake/azure/file")
    num_requests: int | None = Field(None, ge=1, description=(
        "synthetic: requests; conversation: conversations; traces and files: first N lines"))
    input_dist: LengthKind = Field("lognormal", description="Prompt-length distribution")
    input_mean: int = Field(1024, ge=1, description="Prompt length mean (lognormal: median)")
    input_shape: float = Field(0.6, gt=0, description="lognormal sigma or pareto tail index")
    input_min: int = Field(16, ge=1, description="Shortest prompt")
    input_max: int = Field(16384, ge=1, description="Longest prompt")
    output_dist: LengthKind = Field("pareto", description="max_tokens distribution")
    output_mean: int = Field(4000, ge=1, description="max_tokens mean (lognormal: median)")
    output_shape: float = Field(1.5, gt=0, description="lognormal sigma or pareto tail index")
    output_min: int = Field(64, ge=1, description="Smallest max_tokens")
    output_max: int = Field(32768, ge=1, description="Largest max_tokens (R1: 32K)")
    trace_outputs: Literal["trace", "model"] = Field("trace", description=(
        "Trace replay: use the trace's output lengths or the --output-* model"))
    trace_tick_s: float | None = Field(None, ge=0, description=(
        "Mooncake replay: spread each timestamp's requests over this many seconds; default "
        "the trace's 3-s clock, 0 sends them as recorded"))
    system_prompt_tokens: int = Field(0, ge=0, description="Shared system prompt (synthetic)")
    min_turns: int = Field(2, ge=1, description="Fewest turns per conversation")
    max_turns: int = Field(6, ge=1, description="Most turns per conversation")
    think_time_s: float = Field(0.0, ge=0, description="Pause between a conversation's turns")
    seed: int = Field(0, ge=0, description="Seed of every random choice")

    concurrency: int | None = Field(None, ge=1, description="Closed loop: sessions in flight")
    rate: float | None = Field(None, gt=0, description="Open loop: sessions per second")
    burstiness: float = Field(1.0, gt=0, description="Gamma shape of gaps; 1 = Poisson")
    time_scale: float = Field(1.0, gt=0, description="Trace replay: multiply trace times")
    ramp_up_s: float = Field(0.0, ge=0, description="Rise from zero to the full load")
    duration_s: float | None = Field(None, gt=0, description="Start nothing after this")
    rates: list[float] = Field(default_factory=list, description="Sweep these rates")
    concurrencies: list[int] = Field(default_factory=list, description="Sweep these")
    find_max_rate: tuple[float, float] | None = Field(None, description=(
        "Bisect [LOW, HIGH] for the highest rate meeting the SLOs"))
    slo_attainment: float = Field(0.9, gt=0, le=1, description="Share that must meet SLOs")
    search_iterations: int = Field(6, ge=1, description="Bisection steps")

    slo_ttft_ms: float | None = Field(None, gt=0, description="SLO on TTFT")
    slo_ttfat_ms: float | None = Field(None, gt=0, description="SLO on time to first answer")
    slo_tpot_ms: float | None = Field(None, gt=0, description="SLO on TPOT")
    slo_e2e_ms: float | None = Field(None, gt=0, description="SLO on end-to-end latency")
    percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 99.0],
                                     description="Percentiles to report")

    ray: str | None = Field(None, description="Ray address for distributed generation")
    workers: int = Field(1, ge=1, description="Generator actors with --ray")
    out: Path | None = Field(None, description="Directory for result.json, summary.md, plots")
    progress: bool = Field(True, description="Show a progress bar on stderr")
    scrape_metrics: bool = Field(True, description="Scrape /metrics before and after")

    @model_validator(mode="after")
    def _check(self) -> LoadTestConfig:
        modes = [n for n, v in (("--concurrency", self.concurrency), ("--rate", self.rate),
                                ("--rates", self.rates), ("--concurrencies", self.concurrencies),
                                ("--find-max-rate", self.find_max_rate)) if v]
        if len(modes) > 1:
            raise ValueError(f"choose one load mode, not {' and '.join(modes)}")
        if self.workload in ("mooncake", "azure", "file") and self.trace is None:
            raise ValueError(f"--workload {self.workload} needs --trace PATH")
        if self.trace_tick_s is not None and self.workload != "mooncake":
            raise ValueError(f"--trace-tick-s spreads a Mooncake trace's ticks; drop it for "
                             f"--workload {self.workload}")
        if not modes and self.workload in ("synthetic", "conversation"):
            raise ValueError("choose a load: --concurrency N, --rate R, --rates, "
                             "--concurrencies or --find-max-rate LOW:HIGH")
        if any(not 0 < p < 100 for p in self.percentiles):
            raise ValueError("--percentiles must lie strictly between 0 and 100")
        if self.find_max_rate and not self.slo().any:
            raise ValueError("--find-max-rate needs at least one --slo-* bound")
        return self

    def endpoint(self, model: str | None = None) -> Endpoint:
        body = dict(self.extra_body)
        if self.ignore_eos:
            body["ignore_eos"] = True
        return Endpoint(base_url=normalize_base_url(self.url), model=model or self.model,
                        api_key=self.api_key, extra_body=body,
                        request_timeout_s=self.request_timeout_s, metrics_url=self.metrics_url)

    def slo(self) -> Slo:
        def s(ms: float | None) -> float | None:
            return None if ms is None else ms / 1000.0
        return Slo(s(self.slo_ttft_ms), s(self.slo_ttfat_ms), s(self.slo_tpot_ms),
                   s(self.slo_e2e_ms))

    def output_lengths(self) -> LengthDistribution:
        return LengthDistribution(self.output_dist, self.output_mean, self.output_shape,
                                  self.output_min, self.output_max)

    def workload_source(self) -> Workload:
        inputs = LengthDistribution(self.input_dist, self.input_mean, self.input_shape,
                                    self.input_min, self.input_max)
        outputs = self.output_lengths()
        n = self.num_requests
        trace_outputs = outputs if self.trace_outputs == "model" else None
        if self.workload == "synthetic":
            return SyntheticReasoning(n or 100, inputs, outputs, self.system_prompt_tokens,
                                      self.seed)
        if self.workload == "conversation":
            return MultiTurnConversations(n or 20, self.min_turns, self.max_turns, inputs,
                                          outputs, self.think_time_s, self.seed)
        assert self.trace is not None  # checked by _check
        if self.workload == "mooncake":
            tick_s = TICK_S if self.trace_tick_s is None else self.trace_tick_s
            return MooncakeTrace(self.trace, n, trace_outputs, self.seed, tick_s)
        if self.workload == "azure":
            return AzureTrace(self.trace, n, trace_outputs, self.seed)
        return PromptFile(self.trace, self.output_mean, n)

    def arrival(self, load: float | None = None) -> Arrival:
        """The arrival process; `load` overrides the rate or concurrency (sweeps)."""
        if self.concurrency or self.concurrencies:
            c = int(load) if load is not None else self.concurrency
            assert c is not None
            return ConcurrencyArrival(c, self.ramp_up_s, self.duration_s)
        rate = load if load is not None else self.rate
        if rate is not None:
            return RateArrival(rate, self.burstiness, self.ramp_up_s, self.duration_s, self.seed)
        return TraceArrival(self.time_scale, self.duration_s)

    def sweep_loads(self) -> list[float]:
        return [float(x) for x in (self.rates or self.concurrencies)]

    def rate_search(self) -> RateSearch | None:
        if self.find_max_rate is None:
            return None
        low, high = self.find_max_rate
        return RateSearch(low, high, self.slo_attainment, self.search_iterations)

    def schedule_builder(self, workload: Workload):  # -> Callable[[float | None], Schedule]
        """A function from offered load to schedule, over one fixed list of sessions."""
        sessions = workload.sessions()
        if not sessions:
            raise ValueError("the workload has no requests (empty trace or --num-requests 0?)")

        def at(load: float | None = None) -> Schedule:
            return self.arrival(load).schedule(sessions)
        return at
