"""Helpers behind the model-compression course notebooks.

The most used names are importable from the package itself: ``helpers.save(model, path)`` and
``helpers.load(path)`` write and read every model file format (chosen by the suffix).
"""
import logging

# torch.utils.benchmark imports cpp_extension, which warns on CPU-only machines that it found no
# CUDA runtime: harmless here (no extension is compiled), and noise in every notebook's output.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

from .models import CNNConfig, FashionCNN, build_model
from .storage import CheckpointError, ModelFileError, load, read_meta, save

__all__ = ["CheckpointError", "CNNConfig", "FashionCNN", "ModelFileError", "build_model", "load",
           "read_meta", "save"]
