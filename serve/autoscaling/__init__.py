"""Scaling engine replicas on token-level load, one cold start ahead.

`TokenLoadPolicy` (`serve.autoscaling.policy:TokenLoadPolicy`) is the Ray Serve custom policy;
`autoscaling_config(ScalingTargets(...), ...)` is the deployment option that installs it; each
tick's `ScalingDecision` is posted on the `ScalingBoard`. `python -m sim.simulate` compares the
policy with Serve's default and with fixed fleets.
"""

from serve.autoscaling.decision import ScalingDecision
from serve.autoscaling.policy import TokenLoadPolicy
from serve.autoscaling.targets import POLICY_PATH, ScalingTargets, autoscaling_config

__all__ = ["POLICY_PATH", "ScalingDecision", "ScalingTargets", "TokenLoadPolicy",
           "autoscaling_config"]
