"""`ScalingBoard`: where the autoscaling policy posts its latest `ScalingDecision`.

The policy runs in Serve's controller; the router and the metrics endpoint run in the ingress
replicas, and `r1serve status` in its own driver. They meet in Ray's cluster key-value store
(the GCS), one key per deployment. The policy writes at most once per `min_interval_s` unless
the decision changed; readers read off their hot paths (a background refresh, a scrape, a
command). Outside a Ray cluster (unit tests, the simulator) the board is a no-op.
"""

from __future__ import annotations

import json
import logging
import time

from serve.autoscaling.decision import ScalingDecision

log = logging.getLogger(__name__)

_NAMESPACE = "r1serve"
# A decision older than this is left from a policy that no longer runs (the app redeployed with
# another policy, say): the policy re-posts at least every `min_interval_s` while it runs.
STALE_S = 60.0


class ScalingBoard:
    def __init__(self, app_name: str, deployment_name: str, min_interval_s: float = 5.0) -> None:
        self.key = f"autoscaling/{app_name}/{deployment_name}".encode()
        self.min_interval_s = min_interval_s
        self._last: tuple[float, str | None, int] | None = None  # wall time, draining, replicas

    def publish(self, decision: ScalingDecision) -> None:
        now = time.time()
        mark = (decision.draining, decision.replicas)
        if self._last is not None and self._last[1:] == mark and \
                now - self._last[0] < self.min_interval_s:
            return
        kv = _kv()
        if kv is None:
            return
        try:
            kv._internal_kv_put(self.key, json.dumps(decision.to_dict()).encode(),
                                overwrite=True, namespace=_NAMESPACE)
            self._last = (now, *mark)
        except Exception:  # the board is advisory: a failed write must not stop scaling
            log.warning("could not post the scaling decision", exc_info=True)

    def read(self) -> ScalingDecision | None:
        kv = _kv()
        if kv is None:
            return None
        raw = kv._internal_kv_get(self.key, namespace=_NAMESPACE)
        return None if raw is None else ScalingDecision.from_dict(json.loads(raw))


def _kv():
    """Ray's internal KV, when this process is connected to a Ray cluster."""
    try:
        import ray
        from ray.experimental import internal_kv
    except ImportError:
        return None
    if not ray.is_initialized() or not internal_kv._internal_kv_initialized():
        return None
    return internal_kv
