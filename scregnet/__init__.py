"""scregnet: gene regulatory link prediction (scRegNet) as a reproducible pipeline.

The core package holds the science (data, splits, models, embeddings, metrics) and has
no ZenML imports, so it can be used and tested on its own.
"""

__version__ = "0.1.0"
