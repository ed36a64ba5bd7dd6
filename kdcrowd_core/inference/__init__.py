"""Truth inference without features.

Every method is registered by name (``get_method("dawid_skene")``) and has the
Crowd-Kit face (``fit``, ``fit_predict``, ``fit_predict_proba`` on a DataFrame
with columns ``task, worker, label``) plus the array face on
:class:`~kdcrowd_core.data.CrowdData`.
"""
from .base import (BaseInference, available_methods, expected_confusion, get_method, method_defaults, register,
                   register_entry)
from .majority_vote import MajorityVote, expected_tie_accuracy
from .dawid_skene import DawidSkene
from .one_coin import GLAD, OneCoinDawidSkene
from .adaptive import HierarchicalDawidSkene

#: The method the CLI and the dashboard use when the user picks none.
#: Chosen by measurement: see docs/inference.md and benchmarks/inference_accuracy.py.
DEFAULT_METHOD = "hierarchical_dawid_skene"

__all__ = ["BaseInference", "MajorityVote", "DawidSkene", "OneCoinDawidSkene", "GLAD", "HierarchicalDawidSkene",
           "available_methods", "get_method", "method_defaults", "register", "register_entry", "expected_confusion",
           "expected_tie_accuracy", "DEFAULT_METHOD"]
