"""Evaluation: the protocol, per-volume scores and their summary (``scores``), and the back-ends of the commands
that score results: ``testing`` (``medsr test``), ``evaluate`` with ``pairing`` and ``report`` (``medsr
evaluate``), ``segeval`` (``medsr segeval``) and ``clip`` (``medsr clip-score``)."""
