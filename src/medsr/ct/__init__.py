"""Computed tomography: a differentiable 2-D projector and FBP, projection-domain low-dose simulation.

Bottom layer (``geometry``, ``projector``, ``nufft``, ``fbp``, ``phantom``, ``dose``, ``units``, ``water_region``):
torch and numpy only.
``files`` reads and writes CT volumes for ``medsr degrade --dose``.
"""
