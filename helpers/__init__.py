"""Helpers behind the model-compression course notebooks.

The most used names are importable from the package itself: ``helpers.save(model, path)`` and
``helpers.load(path)`` write and read every model file format (chosen by the suffix).
"""
import logging

# torch.utils.benchmark imports cpp_extension, which warns on CPU-only machines that it found no
# CUDA runtime: harmless here (no extension is compiled), and noise in every notebook's output.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from .checkpoints import CheckpointError, load_model, save_model
from .model_files import ModelFileError, load, save
from .models import CNNConfig, FashionCNN, build_model

__all__ = ["CheckpointError", "CNNConfig", "FashionCNN", "ModelFileError", "build_model", "load",
           "load_model", "save", "save_model"]
