"""Inference shared by validation, tests, benchmarks and the commands: how a model predicts planes."""
