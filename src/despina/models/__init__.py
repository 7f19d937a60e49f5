"""Models: plain torch modules and their safe (no-pickle) save format."""

from despina.models.cnn import SmallCNN
from despina.models.store import load_model, save_model

__all__ = ["SmallCNN", "load_model", "save_model"]
