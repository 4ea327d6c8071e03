"""Architectures, one module each; ``medsr.registry.MODELS`` imports every module of this package on first use,
so each registers its models."""
