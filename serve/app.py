"""`build_app(config)`: the Ray Serve application — an OpenAI ingress in front of engine
replicas, each replica one model instance."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serve.config import R1ServeConfig
from serve.engine.deployment import EngineDeployment
from serve.engine.registry import backend_of

ENGINE_DEPLOYMENT = "EngineDeployment"  # Serve's name of the engine deployment


@serve.ingress()
class OpenAIIngress:
    """Validates, applies the chat template, tokenizes once, and streams from the engines."""

    def __init__(self, engine: Any, config: dict) -> None:
        self.engine = engine
        self.config = R1ServeConfig.from_dict(config)
        self.config.apply_logging()

    def __serve_build_asgi_app__(self):
        from serve.api.api_settings import ApiSettings
        from serve.api.ingress import build_openai_app
        from serve.engine.model_path import model_path
        from serve.engine.reference.tokenizer import Tokenizer
        from serve.handle_client import HandleEngineClient

        tokenizer = Tokenizer.from_dir(model_path(self.config))
        registries = []
        if self.config.router.policy == "prefix_aware":  # the router runs in this process
            from serve.routing.routing_metrics import ROUTING_REGISTRY

            registries.append(ROUTING_REGISTRY)
        if token_load_autoscaled(self.config):  # the policy posts its decisions to read
            from serve.autoscaling.scaling_board import ScalingBoard
            from serve.autoscaling.scaling_metrics import scaling_registry

            app_name = serve.get_replica_context().app_name
            registries.append(scaling_registry(ScalingBoard(app_name, ENGINE_DEPLOYMENT).read))
        self.asgi = build_openai_app(HandleEngineClient(self.engine), tokenizer,
                                     ApiSettings.from_config(self.config), registries)
        return self.asgi

    def routing_summary(self) -> dict[str, float]:
        """For `r1serve status`: what the router predicted would be cached against what the
        engines reported as cached, over the requests this ingress replica served."""
        from serve.routing.routing_metrics import routing_totals

        registry = self.asgi.state.metrics.registry
        summary = routing_totals() if self.config.router.policy == "prefix_aware" else {}
        for key, name in (("engine_prompt_tokens", "r1serve_api_prompt_tokens_total"),
                          ("engine_cached_tokens", "r1serve_api_cached_prompt_tokens_total")):
            summary[key] = registry.get_sample_value(name) or 0.0
        return summary


def token_load_autoscaled(config: R1ServeConfig) -> bool:
    """Whether the engine deployment is sized by `TokenLoadPolicy` (which then posts its
    decisions on the `ScalingBoard`) rather than fixed or by Serve's default policy."""
    a = config.autoscaling
    return a.policy == "token_load" and a.min_replicas != a.max_replicas


def _scaling(config: R1ServeConfig) -> dict[str, Any]:
    a = config.autoscaling
    if a.min_replicas == a.max_replicas:
        return {"num_replicas": a.min_replicas}
    if token_load_autoscaled(config):
        from serve.autoscaling.targets import autoscaling_config

        return {"autoscaling_config": autoscaling_config(
            a.targets.scaling_targets(), min_replicas=a.min_replicas,
            max_replicas=a.max_replicas, upscale_delay_s=a.upscale_delay_s,
            downscale_delay_s=a.downscale_delay_s, drain_deadline_s=config.drain.deadline_s,
            look_back_period_s=a.look_back_period_s)}
    return {"autoscaling_config": {
        "min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
        "target_ongoing_requests": a.target_ongoing_requests,
        "upscale_delay_s": a.upscale_delay_s, "downscale_delay_s": a.downscale_delay_s,
        "look_back_period_s": a.look_back_period_s}}


def _routing(config: R1ServeConfig) -> dict[str, Any]:
    if config.router.policy == "power_of_two":
        return {}
    from serve.routing.knobs import RouterKnobs, request_router_config

    return {"request_router_config": request_router_config(
        RouterKnobs.from_dict(config.router.knobs))}


def build_app(config: R1ServeConfig) -> Application:
    """The application `serve.run` deploys; the same for `up`, `deploy` and Ray jobs."""
    e = config.engine
    engine = serve.deployment(EngineDeployment, name=ENGINE_DEPLOYMENT).options(
        max_ongoing_requests=e.max_running * 4,
        graceful_shutdown_timeout_s=config.drain.deadline_s,
        graceful_shutdown_wait_loop_s=1.0,
        # How soon Serve sees a dead replica, and so how soon it starts its replacement.
        health_check_period_s=2.0,
        **backend_of(config).replica_options(config), **_scaling(config), **_routing(config),
    ).bind(config.model_dump())
    ingress = serve.deployment(OpenAIIngress, name="OpenAIIngress").options(
        max_ongoing_requests=config.api.max_in_flight * 2,
        # the ingress relays streams of draining engine replicas; it must outlive their drain
        graceful_shutdown_timeout_s=config.drain.deadline_s + 5.0,
        ray_actor_options={"num_cpus": 0},
    )
    return ingress.bind(engine, config.model_dump())


def app_builder(args: dict[str, Any]) -> Application:
    """Ray Serve config-file entry point (`import_path: serve.app:app_builder`): the `args` of
    the application are an r1serve config, exactly as in a YAML file for `r1serve deploy`."""
    return build_app(R1ServeConfig.from_dict(args, source="serveConfigV2 args"))
