"""Training tasks, siblings on :class:`medsr.tasks.base.TrainingTask`; importing this package registers each in
``medsr.registry.TASKS`` under the name a config's ``task`` gives. A new task is one module here plus a config."""

from medsr.tasks import denoise, joint, reconstruction, segmentation, sr  # noqa: F401
