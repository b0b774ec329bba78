"""The one user-facing configuration schema, shared by `r1serve up`, `r1serve deploy`, Ray job
submission and the Helm chart. Loaded from YAML, validated once here, unknown keys rejected."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serve.autoscaling.targets import ScalingTargets
from serve.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    path: str | None = Field(
        None, description="Checkpoint directory in the Hugging Face layout (config.json, "
        "safetensors, tokenizer). Empty: a tiny random R1-architecture checkpoint is generated "
        "into the cache directory on first use.")
    served_name: str = Field("deepseek-r1", description="Model name clients send and "
                             "/v1/models lists.")
    backend: Literal["reference", "sglang"] = Field(
        "reference", description="'reference': the pure-PyTorch engine (CPU, any model size "
        "that fits); 'sglang': SGLang on GPUs.")
    context_length: int = Field(32768, ge=16, description="Longest prompt plus output, in "
                                "tokens; capped by the model's max_position_embeddings.")
    tiny_seed: int = Field(0, description="Seed of the generated tiny checkpoint (path empty).")


class EngineSection(_Section):
    nodes_per_replica: int = Field(1, ge=1, description="Nodes one model instance spans "
                                   "(one placement-group bundle per node).")
    devices_per_node: int = Field(1, ge=1, description="GPUs per node for 'sglang'; CPU "
                                  "cores per node for 'reference'.")
    ep_size: int = Field(1, ge=1, description="Expert-parallel ranks of one model instance.")
    dp_attention: bool = Field(False, description="Attention data-parallel across ranks "
                               "(each rank owns its requests and KV cache).")
    page_size: int = Field(16, ge=1, description="Tokens per KV page, also the prefix-cache "
                           "block size.")
    kv_pages: int = Field(4096, ge=1, description="KV-cache budget in pages per model "
                          "instance ('reference').")
    max_running: int = Field(64, ge=1, description="Most requests decoding at once.")
    max_batched_tokens: int = Field(512, ge=1, description="Tokens per engine step; longer "
                                    "prompts are prefilled in chunks.")
    prefix_cache: bool = Field(True, description="Reuse KV of shared prompt prefixes.")
    stream_batching_interval_ms: float = Field(
        20.0, ge=0, description="Longest a streamed token waits in the engine replica to share "
        "one Ray message to the ingress with the tokens after it; a request's first and last "
        "tokens never wait. 0 sends every engine step's tokens alone, at more CPU per token.")
    expert_placement: str | None = Field(
        None, description="Expert placement JSON written by `r1serve eplb` ('reference' with "
        "ep_size > 1); empty: experts split contiguously over the ranks.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment for the engine's rank processes, "
        "over what the replica inherits: network-interface settings for torch.distributed "
        "and NCCL (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, NCCL_IB_GID_INDEX, ...).")
    backend_args: dict[str, Any] = Field(default_factory=dict, description="Extra arguments "
                                         "for the backend (for 'sglang': ServerArgs fields).")

    @model_validator(mode="after")
    def _check(self) -> EngineSection:
        if self.max_running > self.max_batched_tokens:
            raise ValueError(f"max_running ({self.max_running}) must not exceed "
                             f"max_batched_tokens ({self.max_batched_tokens}): every running "
                             "request decodes one token per step; lower max_running or raise "
                             "max_batched_tokens")
        return self


class ApiSection(_Section):
    host: str = Field("127.0.0.1", description="Address the HTTP proxy binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the OpenAI API.")
    api_keys_env: str | None = Field(
        None, description="Environment variable holding comma-separated API keys. No keys "
        "from env or file: no authentication.")
    api_keys_file: str | None = Field(None, description="File with one API key per line.")
    max_tokens_cap: int = Field(32768, ge=1, description="Largest max_tokens a client may "
                                "ask for; also the default when it asks for none.")
    default_temperature: float = Field(0.6, ge=0, le=2, description="Temperature when the "
                                       "client sends none (R1 model card: 0.6).")
    default_top_p: float = Field(0.95, gt=0, le=1, description="top_p when the client sends "
                                 "none (R1 model card: 0.95).")
    max_in_flight: int = Field(256, ge=1, description="Requests admitted at once per ingress "
                               "replica; beyond it clients get 429 with Retry-After.")
    request_timeout_s: float = Field(3600.0, gt=0, description="Longest a request may run.")
    max_body_bytes: int | None = Field(
        None, ge=1024, description="Largest request body in bytes; a larger one is answered "
        "413 before it is parsed. Empty: 128 bytes per token of model.context_length, at "
        "least 1 MiB (4 MiB at 32K).")
    docs: bool = Field(False, description="Serve /docs and /redoc, the interactive API pages: "
                       "they need no API key and load their scripts from a CDN. The OpenAPI "
                       "document itself is always at /openapi.json.")

    def api_keys(self) -> frozenset[str]:
        """Keys from the environment variable and the file, read at start."""
        keys: set[str] = set()
        if self.api_keys_env and os.environ.get(self.api_keys_env):
            keys.update(k.strip() for k in os.environ[self.api_keys_env].split(",") if k.strip())
        if self.api_keys_file:
            try:
                text = Path(self.api_keys_file).read_text()
            except OSError as e:
                raise ConfigError(
                    f"api.api_keys_file: cannot read {self.api_keys_file}: {e}") from e
            keys.update(line.strip() for line in text.splitlines() if line.strip())
        return frozenset(keys)


class RouterSection(_Section):
    policy: Literal["prefix_aware", "power_of_two"] = Field(
        "prefix_aware", description="'prefix_aware': r1serve's router (prefix-cache affinity "
        "in token blocks, load in tokens, expected reasoning length, session affinity); "
        "'power_of_two': Ray Serve's default.")
    knobs: dict[str, float] = Field(
        default_factory=dict, description="Overrides of the prefix-aware router's knobs "
        "(fields of serve.routing.RouterKnobs, e.g. cache_hit_weight, decode_cost_per_token, "
        "speculative_ttl_s, session_overload_tokens).")

    @model_validator(mode="after")
    def _check(self) -> RouterSection:
        from serve.routing.knobs import RouterKnobs

        RouterKnobs.from_dict(self.knobs)  # names an unknown or out-of-range knob
        return self


_TARGETS = ScalingTargets()
# Where each of `ScalingTargets.DERIVED` is set: the config has one place for each.
_DERIVED_FROM = {"upscale_delay_s": "autoscaling.upscale_delay_s",
                 "downscale_delay_s": "autoscaling.downscale_delay_s",
                 "drain_deadline_s": "drain.deadline_s"}


class ScalingTargetsSection(_Section):
    """The token-load policy's objectives and planning: `ScalingTargets` less its DERIVED."""

    ttft_p90_s: float = Field(_TARGETS.ttft_p90_s, gt=0, description="Objective: time to "
                              "first token, 90th percentile, seconds. Where more than 10% of "
                              "first tokens miss it, the policy plans replicas' KV less full.")
    ttft_p99_s: float = Field(_TARGETS.ttft_p99_s, gt=0, description="Objective: time to "
                              "first token, 99th percentile, seconds (long prompts prefill for "
                              "seconds on their own); more than 1% over it does the same.")
    itl_s: float = Field(_TARGETS.itl_s, gt=0, description="Objective: mean inter-token "
                         "latency of a stream, seconds; with itl_utilization it sets how many "
                         "streams a replica is planned to decode.")
    kv_utilization: float = Field(
        _TARGETS.kv_utilization, gt=0, le=1, description="Most of a replica's KV cache to "
        "plan on: the KV of tens of R1 streams swings as long ones start and end, and the "
        "rest keeps admissions from stalling. The policy plans lower where TTFT shows it must "
        "(it learns the KV share at which TTFT meets its objectives).")
    prefill_utilization: float = Field(
        _TARGETS.prefill_utilization, gt=0, le=1, description="Share of a replica's measured "
        "prefill speed to plan on (at 0.7 a prompt waits about one prefill on average).")
    itl_utilization: float = Field(
        _TARGETS.itl_utilization, gt=0, le=1, description="Streams per replica are planned "
        "where the replica's measured inter-token latency reaches this share of itl_s.")
    cold_start_s: float = Field(
        _TARGETS.cold_start_s, gt=0, description="Seconds from asking for a replica to its "
        "serving (nodes, placement, weights, CUDA graphs), until the policy has measured one; "
        "with upscale_delay_s it is how far ahead the policy sizes the fleet.")
    trend_window_s: float = Field(
        _TARGETS.trend_window_s, gt=0, description="Seconds of arrival rate the "
        "trend is fitted over; the forecast extends the trend one cold start ahead and scales "
        "it by the mean request in tokens.")
    burst_window_s: float = Field(
        _TARGETS.burst_window_s, gt=0, description="Seconds over which the errors of "
        "past forecasts (each judged when its time came) are measured, and the mean request "
        "in tokens.")
    burst_z: float = Field(_TARGETS.burst_z, ge=0, description="Headroom for bursts, in "
                           "spreads (root mean square) of the forecasts' errors (2: about 98% "
                           "of a normal spread's upside); 0: none.")
    scale_down_fill: float = Field(
        _TARGETS.scale_down_fill, gt=0, le=1, description="Remove a replica only when the "
        "load needs at most this share of one fewer: a margin against adding it back at the "
        "next fluctuation.")

    @model_validator(mode="before")
    @classmethod
    def _known_names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, path in _DERIVED_FROM.items():
                if name in data:
                    raise ValueError(f"set {path}, not targets.{name}")
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown scaling target(s) {unknown}; known: "
                                 f"{sorted(cls.model_fields)}")
        return data

    @model_validator(mode="after")
    def _check(self) -> ScalingTargetsSection:
        self.scaling_targets()  # the dataclass's own checks
        return self

    def scaling_targets(self) -> ScalingTargets:
        """The policy's frozen targets (`autoscaling_config` sets the DERIVED ones)."""
        return ScalingTargets(**self.model_dump())


class AutoscalingSection(_Section):
    policy: Literal["token_load", "ongoing_requests"] = Field(
        "token_load", description="'token_load': r1serve's policy, sizing the fleet for its "
        "token load (KV in use, queued prefill, expected decode, TTFT) one cold start ahead; "
        "'ongoing_requests': Ray Serve's default on target_ongoing_requests.")
    targets: ScalingTargetsSection = Field(
        default_factory=ScalingTargetsSection, description="Objectives and planning shares "
        "of the 'token_load' policy. Its delays and drain deadline come from "
        "autoscaling.upscale_delay_s, autoscaling.downscale_delay_s and drain.deadline_s.")
    min_replicas: int = Field(1, ge=0, description="Fewest model instances. 0 (development "
                              "clusters): the fleet scales to zero when idle, and Serve starts "
                              "one when a request arrives, holding requests at the handle "
                              "meanwhile (a cold start: minutes for R1).")
    max_replicas: int = Field(1, ge=1, description="Most model instances.")
    target_ongoing_requests: float = Field(32.0, gt=0, description="Requests per instance "
                                           "the 'ongoing_requests' policy aims for.")
    upscale_delay_s: float = Field(30.0, ge=0, description="Seconds the load must call for "
                                   "more instances before Serve adds them. Under 'token_load' "
                                   "it is also part of the forecast horizon (this delay plus "
                                   "a cold start).")
    downscale_delay_s: float = Field(
        600.0, ge=0, description="'token_load': seconds spare capacity must last before the "
        "policy starts draining a replica (Serve's own downscale delay is then 0: the policy "
        "drains first, and times this itself); also the delay before scaling from one "
        "instance to zero. 'ongoing_requests': Serve's delay before removing an instance.")
    look_back_period_s: float = Field(30.0, gt=0, description="Seconds over which Serve "
                                      "averages the replicas' reported load before each "
                                      "decision (both policies).")

    @model_validator(mode="after")
    def _check(self) -> AutoscalingSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas "
                             f"({self.max_replicas})")
        return self


class DrainSection(_Section):
    deadline_s: float = Field(600.0, ge=0, description="A replica being removed finishes its "
                              "running requests for at most this long, then ends the rest "
                              "with an error.")


class ObservabilitySection(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of r1serve's own loggers.")


class R1ServeConfig(_Section):
    """Everything `r1serve up` and `r1serve deploy` need."""

    model: ModelSection = Field(default_factory=ModelSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    api: ApiSection = Field(default_factory=ApiSection)
    router: RouterSection = Field(default_factory=RouterSection)
    autoscaling: AutoscalingSection = Field(default_factory=AutoscalingSection)
    drain: DrainSection = Field(default_factory=DrainSection)
    observability: ObservabilitySection = Field(default_factory=ObservabilitySection)
    app_name: str = Field("r1serve", description="Ray Serve application name.")

    @model_validator(mode="after")
    def _check(self) -> R1ServeConfig:
        e = self.engine
        if self.model.backend == "reference" and e.ep_size % e.nodes_per_replica:
            raise ValueError(f"engine.ep_size ({e.ep_size}) must be a multiple of "
                             f"engine.nodes_per_replica ({e.nodes_per_replica}): the reference "
                             "engine puts the same number of ranks on every node")
        return self

    def apply_logging(self) -> None:
        """Set r1serve's own loggers (not Ray's) to `observability.log_level` in this process."""
        import logging

        for name in ("serve", "cluster"):
            logging.getLogger(name).setLevel(self.observability.log_level)

    @classmethod
    def local_default(cls) -> R1ServeConfig:
        """What `r1serve up` runs with no config: the tiny model, one replica of two
        expert-parallel ranks on this machine (configs/local-tiny.yaml says the same)."""
        return cls.from_dict({
            "model": {"context_length": 4096},
            "engine": {"devices_per_node": 2, "ep_size": 2, "kv_pages": 1024},
            "api": {"max_tokens_cap": 2048},
        })

    @classmethod
    def from_yaml(cls, path: str | Path) -> R1ServeConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read config: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> R1ServeConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                for err in e.errors())
            raise ConfigError(f"{source}: {problems}") from None
