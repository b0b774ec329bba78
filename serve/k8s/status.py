"""What a RayService's status says, read from the object KubeRay writes (ray.io/v1, as in the
v1.7.0 CRD): the Ready condition, Serve application and deployment statuses, the serve
endpoints, the active and pending RayClusters; plus why pods cannot be scheduled."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from serve.errors import R1ServeError

# Serve application statuses that mean "broken", not "still starting".
FAILED_APP_STATUSES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})


class K8sError(R1ServeError):
    """A Kubernetes request failed; the message names the object and why."""

    code = "k8s_error"


@dataclass(frozen=True)
class DeploymentStatus:
    name: str
    status: str
    message: str


@dataclass(frozen=True)
class AppStatus:
    name: str
    status: str
    message: str
    deployments: tuple[DeploymentStatus, ...]

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any]) -> AppStatus:
        deployments = tuple(
            DeploymentStatus(dname, str(dd.get("status", "")), str(dd.get("message", "")))
            for dname, dd in sorted((d.get("serveDeploymentStatuses") or {}).items()))
        return cls(name, str(d.get("status", "")), str(d.get("message", "")), deployments)


@dataclass(frozen=True)
class ClusterStatus:
    """One RayCluster behind the RayService (active, or pending during an upgrade)."""

    name: str
    state: str
    ready_workers: int
    desired_workers: int
    applications: tuple[AppStatus, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ClusterStatus | None:
        if not d or not d.get("rayClusterName"):
            return None
        rc = d.get("rayClusterStatus") or {}
        apps = tuple(AppStatus.from_dict(n, a)
                     for n, a in sorted((d.get("applicationStatuses") or {}).items()))
        return cls(str(d["rayClusterName"]), str(rc.get("state", "")),
                   int(rc.get("readyWorkerReplicas", 0) or 0),
                   int(rc.get("desiredWorkerReplicas", 0) or 0), apps)


@dataclass(frozen=True)
class UnschedulablePod:
    name: str
    message: str

    @property
    def lacks_gpus(self) -> bool:
        return "Insufficient nvidia.com/gpu" in self.message


@dataclass(frozen=True)
class RayServiceStatus:
    """The parts of a RayService's status an operator acts on."""

    name: str
    namespace: str
    ready: bool
    reason: str
    message: str
    reconciled: bool  # KubeRay has seen the latest spec (observedGeneration)
    upgrading: bool
    serve_endpoints: int
    api_service: str
    api_port: int
    active: ClusterStatus | None
    pending: ClusterStatus | None
    unschedulable: tuple[UnschedulablePod, ...] = ()

    @classmethod
    def from_object(cls, obj: Mapping[str, Any],
                    unschedulable: tuple[UnschedulablePod, ...] = ()) -> RayServiceStatus:
        """Read a RayService object as the API server returns it."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ready_cond = conditions.get("Ready")
        if ready_cond is not None:
            ready = ready_cond.get("status") == "True"
            reason = str(ready_cond.get("reason", ""))
            message = str(ready_cond.get("message", ""))
        else:  # KubeRay before 1.3 only sets the (now deprecated) serviceStatus
            ready = status.get("serviceStatus") == "Running"
            reason, message = str(status.get("serviceStatus", "")), ""
        upgrading = (conditions.get("UpgradeInProgress") or {}).get("status") == "True"
        generation = int(meta.get("generation", 0) or 0)
        observed = int(status.get("observedGeneration", 0) or 0)
        name = str(meta.get("name", ""))
        serve_svc = (spec.get("serveService") or {})
        svc_name = (serve_svc.get("metadata") or {}).get("name") or f"{name}-serve-svc"
        ports = (serve_svc.get("spec") or {}).get("ports") or []
        port = next((int(p["port"]) for p in ports if p.get("name") == "serve"), 8000)
        return cls(
            name=name, namespace=str(meta.get("namespace", "")), ready=ready, reason=reason,
            message=message, reconciled=observed >= generation, upgrading=upgrading,
            serve_endpoints=int(status.get("numServeEndpoints", 0) or 0),
            api_service=svc_name, api_port=port,
            active=ClusterStatus.from_dict(status.get("activeServiceStatus")),
            pending=ClusterStatus.from_dict(status.get("pendingServiceStatus")),
            unschedulable=unschedulable)

    @property
    def serving(self) -> bool:
        """Ready for the spec last applied."""
        return self.ready and self.reconciled

    @property
    def endpoint(self) -> str:
        ns = f".{self.namespace}" if self.namespace else ""
        return f"http://{self.api_service}{ns}.svc:{self.api_port}/v1"

    def cluster_names(self) -> list[str]:
        return [c.name for c in (self.active, self.pending) if c is not None]

    def summary(self) -> str:
        """One line: what the service waits for now."""
        if self.serving:
            return f"Ready: {self.serve_endpoints} serve endpoint(s) at {self.endpoint}"
        parts = [f"not ready ({self.reason or 'no status yet'})"]
        if not self.reconciled:
            parts.append("KubeRay has not yet seen the latest spec")
        cluster = self.pending or self.active
        if cluster is not None:
            parts.append(f"cluster {cluster.name} {cluster.state or 'starting'}, workers "
                         f"{cluster.ready_workers}/{cluster.desired_workers} ready")
            for app in cluster.applications:
                parts.append(f"app {app.name} {app.status}")
        if self.unschedulable:
            gpu = sum(p.lacks_gpus for p in self.unschedulable)
            what = "insufficient GPUs" if gpu else "unschedulable"
            parts.append(f"{len(self.unschedulable)} pod(s) pending, {what}: "
                         f"{self.unschedulable[0].message}")
        return "; ".join(parts)


def unschedulable_pods(pods: list[Mapping[str, Any]]) -> tuple[UnschedulablePod, ...]:
    """Pending pods the scheduler could not place, with its reason (e.g. "0/12 nodes are
    available: 12 Insufficient nvidia.com/gpu")."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Pending":
            continue
        for cond in status.get("conditions") or []:
            if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                    and cond.get("reason") == "Unschedulable"):
                found.append(UnschedulablePod(str((pod.get("metadata") or {}).get("name", "")),
                                              str(cond.get("message", ""))))
    return tuple(found)


def format_status(s: RayServiceStatus) -> str:
    """Several lines for `r1serve k8s status`."""
    lines = [f"RayService {s.namespace}/{s.name}: "
             f"{'Ready' if s.serving else 'not ready'}"
             + (f" ({s.reason})" if s.reason else "")
             + (" — upgrade in progress" if s.upgrading else "")]
    if s.message:
        lines.append(f"  {s.message}")
    lines.append(f"  API: {s.endpoint} (Service {s.api_service}, "
                 f"{s.serve_endpoints} serve endpoint(s))")
    for role, cluster in (("active", s.active), ("pending", s.pending)):
        if cluster is None:
            continue
        lines.append(f"  {role} cluster {cluster.name}: {cluster.state or 'starting'}, workers "
                     f"{cluster.ready_workers}/{cluster.desired_workers} ready")
        for app in cluster.applications:
            lines.append(f"    application {app.name}: {app.status}"
                         + (f" — {app.message}" if app.message else ""))
            for d in app.deployments:
                lines.append(f"      {d.name}: {d.status}"
                             + (f" — {d.message}" if d.message else ""))
    for pod in s.unschedulable:
        hint = (" (add GPU nodes, or lower config.autoscaling.min_replicas)"
                if pod.lacks_gpus else "")
        lines.append(f"  pod {pod.name} pending: {pod.message}{hint}")
    return "\n".join(lines)


def wait_until_ready(fetch: Callable[[], RayServiceStatus], timeout_s: float, interval_s: float,
                     report: Callable[[str], None], *, heartbeat_s: float = 60.0,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> RayServiceStatus:
    """Poll until the RayService serves the latest spec. Reports each new summary line, and
    the same one again every `heartbeat_s` so that a long weight load visibly goes on."""
    start = clock()
    last_line, last_report = "", -heartbeat_s
    while True:
        status = fetch()
        now = clock() - start
        line = status.summary()
        if line != last_line or now - last_report >= heartbeat_s:
            report(f"[{_elapsed(now)}] {line}")
            last_line, last_report = line, now
        if status.serving:
            return status
        if now >= timeout_s:
            raise K8sError(f"RayService {status.namespace}/{status.name} not ready after "
                           f"{_elapsed(timeout_s)}: {line}")
        sleep(min(interval_s, max(0.0, timeout_s - now)))


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
