"""The local Ray of `r1serve up` listens on loopback only: none of its ports (GCS, raylet,
workers, dashboard agent, metrics exporters) is reachable from another machine."""

from __future__ import annotations

import ipaddress
import time

import ray

from cluster.local_cluster import free_port, init_local_ray

# Ray puts its vendored psutil on sys.path when it is imported.
import psutil  # noqa: E402  isort: skip

# Processes that must be listening before the check means anything: the three metrics exporters
# that bind 0.0.0.0 on a non-loopback node (dashboard agent, dashboard, autoscaler monitor).
EXPECTED = ("gcs_server", "raylet", "ray::DashboardAgent", "dashboard.py", "monitor.py")


def _listeners() -> dict[tuple[str, int], str]:
    """(address, port) -> process, for every TCP listener of this process and its children."""
    me = psutil.Process()
    names: dict[int, str] = {}
    for proc in (me, *me.children(recursive=True)):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        script = next((a for a in cmd if a.endswith(".py")), "")
        names[proc.pid] = script.rsplit("/", 1)[-1] if script else proc.name()
    return {(c.laddr.ip, c.laddr.port): names[c.pid]
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in names}


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_up_ray_listens_on_loopback_only(monkeypatch) -> None:
    # The dashboard's and the monitor's exporters have fixed ports; another Ray on this machine
    # may hold them, and then they do not listen at all. Free ones make them listen here.
    monkeypatch.setenv("DASHBOARD_METRIC_PORT", str(free_port()))
    monkeypatch.setenv("AUTOSCALER_METRIC_PORT", str(free_port()))
    init_local_ray(num_cpus=1)
    try:
        deadline = time.monotonic() + 60
        while True:
            found = _listeners()
            missing = set(EXPECTED) - set(found.values())
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"no listener of {sorted(missing)} within 60 s: {found}"
        exposed = {f"{ip}:{port}": who for (ip, port), who in found.items()
                   if not _is_loopback(ip)}
        assert not exposed, f"Ray listens beyond loopback: {exposed}"
        assert ray.util.get_node_ip_address() == "127.0.0.1"
    finally:
        ray.shutdown()
