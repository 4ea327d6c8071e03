"""Training tasks, siblings on :class:`medsr.tasks.base.TrainingTask`. ``medsr.registry.TASKS`` imports every
module of this package on first use, so each registers its task under the name a config's ``task`` gives: a new
task is one module here plus a config."""
