"""Architectures. Importing this package registers every model in ``medsr.registry.MODELS``."""

from medsr.models import base, blocks  # noqa: F401
from medsr.models import bicubic, discriminator, dualarb, edsr, liif, metasr, rdn, swinir, unet, zerofill  # noqa: F401
from medsr.models import sakg  # noqa: F401  (the flagship, models/sakg.py)
from medsr.models import dc, joint, sequential, t2net  # noqa: F401  (undersampled inputs, issue 12)
from medsr.models import cncl, dncnn, redcnn  # noqa: F401  (CT denoisers, task: denoise)
