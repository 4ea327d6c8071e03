"""NIfTI test files with known geometry, shared by the degrade tests."""

import nibabel as nib
import numpy as np


def save_nifti(path, data, zooms, origin):
    """Write ``data`` with a diagonal affine of ``zooms`` at ``origin`` (qform code 1, sform code 2, mm/sec)."""
    affine = np.diag(list(zooms) + [1.0])
    affine[:3, 3] = origin
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return img


def centre(affine, shape):
    """World position of a volume's centre."""
    return affine[:3, :3] @ ((np.asarray(shape[:3]) - 1) / 2) + affine[:3, 3]
