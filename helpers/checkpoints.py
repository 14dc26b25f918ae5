"""TEMPORARY shim during the storage move (removed before commit)."""
from .storage import load as load_model, save as save_model  # noqa: F401
