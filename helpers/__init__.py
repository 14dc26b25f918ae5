"""Helpers behind the model-compression course notebooks.

The most used names are importable from the package itself, e.g. ``helpers.load_model(path)``.
"""
from .checkpoints import CheckpointError, load_model, save_model
from .models import CNNConfig, FashionCNN, build_model

__all__ = ["CheckpointError", "CNNConfig", "FashionCNN", "build_model", "load_model", "save_model"]
