"""Training: the CNN trainer and K-fold cross-validation for out-of-fold predictions."""

from despina.training.crossval import CrossValResult, cross_validate
from despina.training.trainer import predict, train_classifier

__all__ = ["CrossValResult", "cross_validate", "predict", "train_classifier"]
