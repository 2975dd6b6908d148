"""MASSIVE data: validated utterances (words + BIO slot tags), locale facts and orders.

from xlcl.data import load_massive
data = load_massive("amazon-massive-dataset-1.1.tar.gz", ["en-US", "de-DE"])
data.utterances("en-US", "train")[0].tags
"""

from xlcl.data.errors import DataError, InvalidRow
from xlcl.data.labels import intent_names, slot_label_names
from xlcl.data.locales import LOCALES, LocaleFacts, vitality
from xlcl.data.massive import MassiveData, load_massive
from xlcl.data.orders import ORDERS, resolve_order
from xlcl.data.utterance import SPLITS, Split, Utterance

__all__ = [
    "LOCALES",
    "ORDERS",
    "SPLITS",
    "DataError",
    "InvalidRow",
    "LocaleFacts",
    "MassiveData",
    "Split",
    "Utterance",
    "intent_names",
    "load_massive",
    "resolve_order",
    "slot_label_names",
    "vitality",
]
