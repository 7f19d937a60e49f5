"""Preprocessing: fit/transform image operators, saved with the model for serving."""

from despina.preprocessing.image import ImagePipeline, resize_image, to_mode

__all__ = ["ImagePipeline", "resize_image", "to_mode"]
