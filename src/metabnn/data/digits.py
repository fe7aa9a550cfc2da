"""scikit-learn's bundled 8x8 digits: a tiny dataset that needs no files, for smoke runs.

scikit-learn is optional (not a metabnn dependency); this is only usable where it is installed.
"""

from __future__ import annotations

import numpy as np
import torch

from metabnn.errors import MetabnnError

# A fixed split (the last 297 of 1797 samples) so every run and stage sees the same test set.
N_TEST = 297


def sklearn_available() -> bool:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def read_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 [1500, 8, 8], train_y int64, test_x [297, 8, 8], test_y)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MetabnnError(f"dataset 'digits' needs scikit-learn ({e}); pip install scikit-learn, or use mnist") from None
    bunch = load_digits()
    # Pixels are 0..16 counts; scale to the 0..255 range the other datasets use.
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    return x[:-N_TEST].clone(), y[:-N_TEST].clone(), x[-N_TEST:].clone(), y[-N_TEST:].clone()
