"""Scaling engine replicas on token-level load, and a trace-driven simulator to judge it.

`TokenLoadPolicy` (`serve.autoscaling.policy:TokenLoadPolicy`) is the Ray Serve custom policy;
`autoscaling_config(ScalingTargets(...), ...)` is the deployment option that installs it;
`python -m serve.autoscaling.simulate` compares it with Serve's default and a fixed fleet.
"""

from serve.autoscaling.policy import ReplicaLoad, TokenLoadPolicy, desired_replicas
from serve.autoscaling.targets import POLICY_PATH, ScalingTargets, autoscaling_config

__all__ = ["POLICY_PATH", "ReplicaLoad", "ScalingTargets", "TokenLoadPolicy",
           "autoscaling_config", "desired_replicas"]
