"""Datasets: preparation into slice stores, the embedded default data, training datasets and scale samplers."""
