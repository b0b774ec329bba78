"""Workloads: each turns its source (a distribution, a trace, a file) into `Session`s."""

from loadtest.workloads.azure import AzureTrace
from loadtest.workloads.base import Workload
from loadtest.workloads.conversation import MultiTurnConversations
from loadtest.workloads.mooncake import MooncakeTrace
from loadtest.workloads.prompt_file import PromptFile
from loadtest.workloads.synthetic import SyntheticReasoning

__all__ = [
    "AzureTrace",
    "MooncakeTrace",
    "MultiTurnConversations",
    "PromptFile",
    "SyntheticReasoning",
    "Workload",
]
