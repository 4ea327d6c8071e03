"""Inference on whole volumes: batching and tiling, and resampling references onto the target grid."""
