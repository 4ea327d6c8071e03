"""Evaluation: the protocol, per-volume scores and their summary (:mod:`medsr.evaluation.scores`)."""
