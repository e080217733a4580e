"""Every figure the notebooks draw (being split into one module per topic)."""

from umlkit.plots.uncertainty_maps import *  # noqa: F403
