"""`r1serve k8s status|apply|delete`: the chart on a cluster, without helm releases.

`apply` renders the chart with `helm template` and server-side-applies every object (field
manager `r1serve`); `delete` removes them again (the weights claim only when asked); `status`
reads the RayService's conditions, Serve applications and endpoints, and with `--wait` polls
until it is Ready. serve/cli.py calls `add_k8s_parser(sub)`; each subcommand
sets `func` to a handler that takes the parsed namespace and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from serve.k8s.helm import CHART_DIR, RenderRequest, render
from serve.k8s.status import K8sError, format_status, wait_until_ready

_PROFILES_HELP = "chart profile: h200x8, h100x16, h800x32-wide-ep, distill-qwen-32b or custom"


def add_k8s_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `k8s` with its `status`, `apply` and `delete` subcommands."""
    p = subparsers.add_parser(
        "k8s", help="deploy to Kubernetes (KubeRay RayService) and follow its status",
        description="Apply the r1serve Helm chart's objects to a cluster with KubeRay, read the "
                    "RayService's status, or delete it. Uses your kubeconfig (or the pod's "
                    "service account).")
    sub = p.add_subparsers(dest="k8s_command", required=True)

    ap = sub.add_parser("apply", help="render the chart for a profile and server-side-apply it")
    _render_args(ap)
    ap.add_argument("--dry-run", action="store_true",
                    help="print the rendered objects instead of applying them")
    _wait_args(ap)
    ap.set_defaults(func=_apply)

    st = sub.add_parser("status", help="the RayService's readiness, applications and endpoint")
    _cluster_args(st)
    st.add_argument("--name", default="r1serve",
                    help="RayService name (the chart's: the release name; default r1serve)")
    _wait_args(st)
    st.set_defaults(func=_status)

    de = sub.add_parser("delete", help="delete what `apply` created (weights are kept)")
    _render_args(de)
    de.add_argument("--delete-weights", action="store_true",
                    help="also delete the weights PersistentVolumeClaim (700 GB to download "
                         "again)")
    de.set_defaults(func=_delete)
    return p


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", "-n", help="namespace (default: the kubeconfig context's)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def _render_args(p: argparse.ArgumentParser) -> None:
    _cluster_args(p)
    p.add_argument("--profile", required=True, help=_PROFILES_HELP)
    p.add_argument("--release", default="r1serve",
                   help="release name, the prefix of every object name (default r1serve)")
    p.add_argument("--set", dest="set_values", action="append", default=[],
                   metavar="KEY=VALUE", help="chart value, as helm --set (repeatable)")
    p.add_argument("--values", "-f", dest="values_files", action="append", default=[],
                   type=Path, metavar="FILE", help="chart values file (repeatable)")
    p.add_argument("--chart", type=Path, default=CHART_DIR,
                   help="chart directory (default: helm/r1serve of this checkout)")
    p.add_argument("--helm", help="helm binary (default: on PATH or beside this Python)")


def _wait_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="poll until the RayService is Ready, printing progress")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds --wait waits; loading R1's weights takes long (default 3600)")
    p.add_argument("--interval", type=float, default=10.0,
                   help="seconds between polls (default 10)")


def _render(ns: argparse.Namespace) -> list[dict[str, Any]]:
    request = RenderRequest(profile=ns.profile, release=ns.release, namespace=ns.namespace,
                            set_values=tuple(ns.set_values),
                            values_files=tuple(ns.values_files), chart=ns.chart)
    return render(request, ns.helm)


def _connect(ns: argparse.Namespace):
    from serve.k8s.cluster import Cluster

    return Cluster.connect(ns.context, ns.namespace)


def _apply(ns: argparse.Namespace) -> int:
    objects = _render(ns)
    if ns.dry_run:
        import yaml

        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return 0
    cluster = _connect(ns)
    cluster.apply(objects)
    name = next((o["metadata"]["name"] for o in objects if o["kind"] == "RayService"), None)
    if name is None:
        return 0
    if not ns.wait:
        print(f"follow it with: r1serve k8s status --name {name} -n {cluster.namespace} --wait")
        return 0
    return _report(cluster, name, ns)


def _status(ns: argparse.Namespace) -> int:
    return _report(_connect(ns), ns.name, ns)


def _report(cluster, name: str, ns: argparse.Namespace) -> int:
    if ns.wait:
        wait_until_ready(lambda: cluster.rayservice_status(name), ns.timeout, ns.interval,
                         lambda line: print(line, file=sys.stderr, flush=True))
    status = cluster.rayservice_status(name)
    print(format_status(status))
    return 0 if status.serving else 1


def _delete(ns: argparse.Namespace) -> int:
    objects = _render(ns)
    cluster = _connect(ns)

    def keep(obj: dict[str, Any]) -> bool:
        return obj["kind"] == "PersistentVolumeClaim" and not ns.delete_weights

    cluster.delete(objects, keep)
    return 0


__all__ = ["add_k8s_parser", "K8sError"]
