"""Every model file format (``.pt``, ``.sparse``, ``.packed``, ``.ccz``, ``.int8``) behind one
registry; ``save``/``load`` pick the format by the suffix (``storage.registry``)."""
from .checkpoint import CheckpointError, read_meta
from .framing import ModelFileError
from .registry import FORMATS, ModelFormat, format_of, load, save

__all__ = ["CheckpointError", "FORMATS", "ModelFileError", "ModelFormat", "format_of", "load", "read_meta", "save"]
