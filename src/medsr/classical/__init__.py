"""Training-free restorers and what they need: a noise power spectrum estimator for correlated (FBP) noise
(:mod:`.noise`) and a BM3D-style collaborative filter for colored noise (:mod:`.bm3d`). Core layer: no imports from
data, tasks, infer or engine."""
