"""Dataset preparers, one module each, each registered in ``medsr.registry.DATASETS`` as a
:class:`~medsr.data.prepare.common.Preparer` that declares its own command-line arguments (``medsr prepare
NAME``): IXI, BraTS, fastMRI and generic CSV pairs (the steps they share are in ``common``), the embedded MNI
dataset (``mni``, built by :mod:`medsr.data.embedded`), and the CT pair stores: the embedded CT dataset (``ct``),
CT NIfTI volumes with a simulated low dose (``ctvol``) and measured low-dose/full-dose DICOM pairs (``ldct``)."""
