"""Pretrained encoders: offline models imported from PyPI packages, vocabulary trimming."""

from xlcl.models.offline import (
    OFFLINE_MODELS,
    OfflineModel,
    cache_root,
    cached_path,
    import_e5_small,
    import_model,
    offline_model,
    resolve_model,
)
from xlcl.models.trim import VocabularyTrim, trim_embeddings

__all__ = [
    "OFFLINE_MODELS",
    "OfflineModel",
    "VocabularyTrim",
    "cache_root",
    "cached_path",
    "import_e5_small",
    "import_model",
    "offline_model",
    "resolve_model",
    "trim_embeddings",
]
