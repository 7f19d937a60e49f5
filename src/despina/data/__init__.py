"""Data: image datasets from folders, manifests and built-in real datasets, and safe decoding."""

from despina.data.decode import Decoded, decode_image
from despina.data.images import ImageDataset, ImageRecord
from despina.data.sources import load_source

__all__ = ["Decoded", "ImageDataset", "ImageRecord", "decode_image", "load_source"]
