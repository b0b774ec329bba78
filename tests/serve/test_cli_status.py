"""`r1serve status`: the line that says why the engine fleet has the size it has."""

from __future__ import annotations

import time

import pytest

from serve import cli
from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.scaling_board import STALE_S

NOW = 1_700_000_000.0
DECISION = ScalingDecision(
    at=NOW - 3, replicas=3, running=2, target=2, demand={"kv": 2.4, "decode": 1.9},
    needed=2.6, growth=1.05, headroom=0.04, cold_start_s=300.0,
    reason="adding for the load one cold start ahead")


def test_the_line_is_the_decision_s_why_and_its_age() -> None:
    line = cli.scaling_status(DECISION, NOW)
    assert line == f"  scaling: {DECISION.why()} (decided 3 s ago)"
    assert "3 replicas (2 serving): adding for the load one cold start ahead" in line
    assert "kv 2.4, decode 1.9" in line


def test_an_old_decision_says_the_policy_no_longer_runs() -> None:
    line = cli.scaling_status(DECISION, DECISION.at + STALE_S + 100)
    assert "not renewed since: the policy no longer runs" in line


def test_no_decision_says_why_there_may_be_none() -> None:
    line = cli.scaling_status(None, NOW)
    assert "has not decided yet" in line and "not autoscaled by it" in line


class FakeBoard:
    posted: dict[tuple[str, str], ScalingDecision] = {}

    def __init__(self, app_name: str, deployment_name: str) -> None:
        self.key = (app_name, deployment_name)

    def read(self) -> ScalingDecision | None:
        if self.key == ("broken", "EngineDeployment"):
            raise ConnectionError("GCS unreachable")
        return self.posted.get(self.key)


@pytest.fixture
def board(monkeypatch) -> type[FakeBoard]:
    import serve.autoscaling.scaling_board as scaling_board

    monkeypatch.setattr(scaling_board, "ScalingBoard", FakeBoard)
    FakeBoard.posted = {}
    return FakeBoard


def test_status_reads_the_deployment_s_board(board) -> None:
    board.posted[("r1serve", "EngineDeployment")] = ScalingDecision(
        at=time.time(), replicas=1, running=1, target=1, reason="at min_replicas (1)")
    assert "1 replica (1 serving): at min_replicas (1)" in cli._scaling_line(
        "r1serve", "EngineDeployment")
    assert "has not decided yet" in cli._scaling_line("other-app", "EngineDeployment")
    assert "unreadable: GCS unreachable" in cli._scaling_line("broken", "EngineDeployment")


@pytest.fixture
def token_loader():
    """Ray caches the token it loaded once per process (an earlier test's cluster may have
    left one): read afresh from this test's environment, and again after it."""
    from ray._raylet import AuthenticationTokenLoader

    AuthenticationTokenLoader.instance().reset_cache()
    yield
    AuthenticationTokenLoader.instance().reset_cache()


def test_a_failed_connection_says_what_to_set(monkeypatch, capsys, token_loader) -> None:
    import ray

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # no token at hand
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)

    def refused(**_):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(ray, "init", refused)
    assert cli.main(["status", "--address", "10.0.0.1:6379"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the Ray cluster at 10.0.0.1:6379" in err
    assert "RAY_AUTH_MODE=token" in err and "RAY_AUTH_TOKEN" in err
    assert "Traceback" not in err


def test_a_token_at_hand_is_used(monkeypatch, tmp_path, token_loader) -> None:
    from serve import ray_connection

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    token = tmp_path / "auth_token"
    token.write_text("0123456789abcdef" * 4)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    try:
        assert ray_connection.use_token_if_available()
        assert ray_connection.os.environ["RAY_AUTH_MODE"] == "token"
    finally:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit choice stands
    assert not ray_connection.use_token_if_available()


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:6379", True), ("localhost:6379", True), ("[::1]:6379", True),
    ("10.0.0.1:6379", False), ("ray://127.0.0.1:10001", True), ("head.svc:6379", False)])
def test_a_cluster_on_loopback_is_joined_from_loopback(address, loopback) -> None:
    """`r1serve up`'s cluster listens on 127.0.0.1 only; a process joining it from the
    routable IP would look for its raylet there."""
    from serve import ray_connection

    assert ray_connection._on_loopback(address) is loopback
