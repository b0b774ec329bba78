"""The Kubernetes API, through the official `kubernetes` client: server-side apply of the chart's
objects, deletion, and the reads `status` needs. Every failure becomes a `K8sError` that names
the object and the reason (no cluster access, KubeRay CRDs missing, refused by the server)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from serve.k8s.status import K8sError, RayServiceStatus, unschedulable_pods

log = logging.getLogger(__name__)

FIELD_MANAGER = "r1serve"
RAY_GROUP = "ray.io"


def connect(context: str | None = None) -> tuple[Any, str]:
    """An ApiClient for kubeconfig `context` (or the in-cluster service account) and the
    namespace that context defaults to."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(context=context)
        contexts, active = config.list_kube_config_contexts()
        if context:
            active = next((c for c in contexts if c["name"] == context), active)
        namespace = (active.get("context") or {}).get("namespace") or "default"
    except (ConfigException, FileNotFoundError, TypeError) as kube_err:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise K8sError(f"no cluster access: no usable kubeconfig ({kube_err}) and not "
                           "running in a pod; set KUBECONFIG or pass --context") from None
        namespace = _incluster_namespace()
    return client.ApiClient(), namespace


def _incluster_namespace() -> str:
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


def api_reason(e: Exception) -> str:
    """The API server's own message from an ApiException, else the exception text."""
    status = getattr(e, "status", None)
    body = getattr(e, "body", None)
    message = ""
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = str(body)[:300]
    reason = getattr(e, "reason", None) or type(e).__name__
    if status is not None:
        return f"{status} {reason}: {message}" if message else f"{status} {reason}"
    return str(e) or reason


def object_ref(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


class Cluster:
    """One cluster, reached through the dynamic client (`kubernetes.dynamic.DynamicClient`)."""

    def __init__(self, dynamic: Any, namespace: str) -> None:
        self.dyn = dynamic
        self.namespace = namespace

    @classmethod
    def connect(cls, context: str | None = None, namespace: str | None = None) -> Cluster:
        """Connect and discover the server's API resources (the first request it makes)."""
        from kubernetes.dynamic import DynamicClient

        api_client, default_ns = connect(context)
        try:
            dynamic = DynamicClient(api_client)
        except Exception as e:  # urllib3 connection errors, 401/403 on discovery
            host = getattr(api_client.configuration, "host", "?")
            raise K8sError(f"no cluster access: API server {host}: {api_reason(e)}") from None
        return cls(dynamic, namespace or default_ns)

    def resource(self, api_version: str, kind: str) -> Any:
        """The API resource serving `kind`, or a K8sError saying which CRD is missing."""
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            if api_version.split("/")[0] == RAY_GROUP:
                raise K8sError(f"{kind} ({api_version}): missing KubeRay CRDs: the cluster "
                               "does not serve ray.io/v1; install the KubeRay operator "
                               "(v1.7.0 or newer) first") from None
            raise K8sError(f"{kind} ({api_version}) is not served by this cluster: install "
                           "its CRD or turn off the chart value that renders it") from None

    def apply(self, objects: Iterable[Mapping[str, Any]],
              report: Callable[[str], None] = print) -> None:
        """Server-side apply each object (field manager r1serve, taking over fields that other
        managers set), in the order given."""
        objects = list(objects)
        # Resolve every kind before changing anything: a missing CRD fails the whole apply.
        resources = [self.resource(o["apiVersion"], o["kind"]) for o in objects]
        for obj, res in zip(objects, resources, strict=True):
            body = self._placed(obj, res)
            try:
                self.dyn.server_side_apply(
                    res, body=body, name=body["metadata"]["name"],
                    namespace=body["metadata"].get("namespace"),
                    field_manager=FIELD_MANAGER, force_conflicts=True)
            except Exception as e:
                raise K8sError(f"apply {object_ref(obj)} in {self.namespace}: "
                               f"{api_reason(e)}") from None
            report(f"applied {object_ref(obj)}")

    def delete(self, objects: Iterable[Mapping[str, Any]], keep: Callable[[Mapping], bool],
               report: Callable[[str], None] = print) -> None:
        """Delete the objects in reverse order; absent ones and kinds the cluster does not
        serve are skipped; `keep(obj)` objects are left in place."""
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        for obj in reversed(list(objects)):
            if keep(obj):
                report(f"kept {object_ref(obj)}")
                continue
            try:
                res = self.dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            except ResourceNotFoundError:
                report(f"skipped {object_ref(obj)}: {obj['apiVersion']} not served")
                continue
            name = obj["metadata"]["name"]
            try:
                self.dyn.delete(res, name=name,
                                namespace=self.namespace if res.namespaced else None,
                                body={"propagationPolicy": "Background"})
            except NotFoundError:
                report(f"absent {object_ref(obj)}")
                continue
            except Exception as e:
                raise K8sError(f"delete {object_ref(obj)} in {self.namespace}: "
                               f"{api_reason(e)}") from None
            report(f"deleted {object_ref(obj)}")

    def rayservice_status(self, name: str) -> RayServiceStatus:
        """The RayService's status, with the reasons its pods cannot be scheduled."""
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self.resource(f"{RAY_GROUP}/v1", "RayService")
        try:
            obj = self.dyn.get(res, name=name, namespace=self.namespace).to_dict()
        except NotFoundError:
            raise K8sError(f"RayService/{name} not found in namespace {self.namespace}: "
                           "apply it with `r1serve k8s apply --profile NAME`") from None
        except Exception as e:
            raise K8sError(f"read RayService/{name} in {self.namespace}: "
                           f"{api_reason(e)}") from None
        status = RayServiceStatus.from_object(obj)
        names = status.cluster_names()
        if not names:
            return status
        pods_res = self.resource("v1", "Pod")
        selector = f"ray.io/cluster in ({','.join(names)})"
        try:
            pods = self.dyn.get(pods_res, namespace=self.namespace,
                                label_selector=selector).to_dict().get("items", [])
        except Exception as e:  # pods are a diagnosis: the status stands without them
            log.warning("cannot list pods of %s: %s", name, api_reason(e))
            pods = []
        return RayServiceStatus.from_object(obj, unschedulable_pods(pods))

    def _placed(self, obj: Mapping[str, Any], res: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(obj))  # a deep copy the caller's objects do not share
        if res.namespaced:
            body.setdefault("metadata", {})["namespace"] = self.namespace
        return body
