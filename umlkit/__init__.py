"""umlkit: uncertainty-informed mutual learning for reliable medical image analysis.

The library behind the notebooks: evidential losses (:mod:`umlkit.evidential`), the UML network
(:mod:`umlkit.models`), calibration and uncertainty metrics (:mod:`umlkit.metrics`), synthetic data and
real-dataset loaders (:mod:`umlkit.data`), training (:mod:`umlkit.train`) and plots (:mod:`umlkit.plots`).
"""

__version__ = "0.1.0"
