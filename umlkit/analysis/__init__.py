"""The experiments behind notebooks 04-08 (being split into one module per topic)."""

from umlkit.analysis.failure_cases import *  # noqa: F403
