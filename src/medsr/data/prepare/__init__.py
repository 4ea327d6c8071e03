"""Dataset preparers, one module each, registered in ``medsr.registry.DATASETS`` (``medsr prepare NAME``): IXI,
BraTS, fastMRI and generic CSV pairs (the steps they share are in ``common``) and the embedded MNI dataset
(``mni``, built by :mod:`medsr.data.embedded`)."""
