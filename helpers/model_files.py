"""TEMPORARY shim during the storage move (removed before commit)."""
from .storage.registry import FORMATS as CODECS, load, save  # noqa: F401
