"""Image augmentations for contrastive views: batched, per-sample, seeded, torch only.

The supervisory p of SimCLR (Thm 3) is "the other augmented view of the same item"; these
transforms make the views. Each takes a batch ``x`` of shape (B, C, H, W) in a floating dtype and
returns a tensor of the same shape, dtype and device, drawing every sample's parameters from the
optional ``torch.Generator``.

- :mod:`.base`: the ``Augmentation`` contract and the shared sampling helpers;
- :mod:`.geometric`: crops, affine maps and flips (one ``grid_sample`` per batch);
- :mod:`.photometric`: noise, blur, colour jitter and erasing;
- :mod:`.compose`: ``Compose``, ``default_augmentation`` and ``mild_augmentation``.
"""

from .base import Augmentation, check_images
from .compose import Compose, default_augmentation, mild_augmentation
from .geometric import RandomAffine, RandomHorizontalFlip, RandomResizedCrop
from .photometric import ColorJitter, GaussianBlur, GaussianNoise, RandomErasing

__all__ = ["Augmentation", "RandomResizedCrop", "RandomAffine", "RandomHorizontalFlip", "GaussianNoise",
           "GaussianBlur", "ColorJitter", "RandomErasing", "Compose", "default_augmentation",
           "mild_augmentation", "check_images"]
