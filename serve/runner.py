"""Starting the application: `r1serve up` (a local Ray) and `r1serve deploy` (a cluster)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import urllib.request

from serve.config import R1ServeConfig
from serve.errors import R1ServeError

log = logging.getLogger(__name__)


class DeployError(R1ServeError):
    """The application did not become healthy."""

    code = "deploy_failed"


def start_app(config: R1ServeConfig) -> None:
    """Deploy the application on the connected Ray; the HTTP proxy takes the config's host and
    port, and R1SERVE_HTTP_HEADER_TIMEOUT_S, unless Serve already runs (then its proxy stays as
    it is)."""
    from ray import serve

    from serve.app import build_app
    from serve.header_timeout import proxy_env
    from serve.settings import Settings

    # Serve's proxies are the controller's children and inherit its environment: the one way to
    # reach their processes before their HTTP servers start.
    env = proxy_env(Settings.from_env().http_header_timeout_s)
    serve.start(http_options={"host": config.api.host, "port": config.api.port},
                controller_options={"runtime_env": {"env_vars": env}})
    serve.run(build_app(config), name=config.app_name, route_prefix="/", blocking=False)


def wait_healthy(config: R1ServeConfig, timeout_s: float, progress=print) -> None:
    """Poll Serve's application status, then the API's /health, reporting progress."""
    from ray import serve

    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(config.app_name)
        status = None if app is None else str(app.status.value if hasattr(app.status, "value")
                                               else app.status)
        if status == "DEPLOY_FAILED":
            raise DeployError(f"application {config.app_name!r} failed to deploy: {app.message}")
        if status != last:
            progress(f"  application {config.app_name}: {status or 'starting'}")
            last = status
        if status == "RUNNING" and _http_ok(config):
            return
        time.sleep(1.0)
    raise DeployError(f"application {config.app_name!r} not healthy after {timeout_s:.0f} s "
                      f"(last status {last}); see `r1serve status` and the Ray logs")


def _http_ok(config: R1ServeConfig) -> bool:
    host = "127.0.0.1" if config.api.host in ("0.0.0.0", "::") else config.api.host
    try:
        with urllib.request.urlopen(f"http://{host}:{config.api.port}/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def ready_line(config: R1ServeConfig) -> str:
    host = "127.0.0.1" if config.api.host in ("0.0.0.0", "::") else config.api.host
    base = f"http://{host}:{config.api.port}/v1"
    body = json.dumps({"model": config.model.served_name, "max_tokens": 32,
                       "messages": [{"role": "user", "content": "Hello"}]})
    auth = ' -H "Authorization: Bearer $KEY"' if config.api.api_keys() else ""
    return (f"r1serve is ready at {base} (model {config.model.served_name})\n"
            f"  curl {base}/chat/completions -H 'Content-Type: application/json'{auth} "
            f"-d '{body}'")


def up(config: R1ServeConfig, timeout_s: float = 600.0) -> int:
    """Run the application on a local Ray until Ctrl-C."""
    import ray
    from ray import serve

    from cluster.local_cluster import init_local_ray
    from serve.engine.model_path import model_path

    print(f"r1serve up: model {model_path(config)}", flush=True)  # writes the tiny model once
    init_local_ray()  # a Ray of its own, never a stale one found in /tmp; its ports on loopback
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        start_app(config)
        wait_healthy(config, timeout_s)
        print(ready_line(config), flush=True)
        while not stop.wait(1.0):
            pass
        print("r1serve: shutting down", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


def deploy(config: R1ServeConfig, address: str | None, timeout_s: float = 1800.0) -> int:
    """Deploy onto an existing Ray cluster and return once the application is healthy."""
    from serve.ray_connection import connect

    connect(address)
    start_app(config)
    wait_healthy(config, timeout_s, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(ready_line(config), flush=True)
    return 0
