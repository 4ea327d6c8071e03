"""The training engine on Lightning 2: config → module + data → run directory (see :mod:`medsr.engine.runs`)."""
