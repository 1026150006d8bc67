"""Data: background sources, complexity measures, degradations with ground-truth layers, paired data."""

from probe.data.types import DegradedBatch

__all__ = ["DegradedBatch"]
