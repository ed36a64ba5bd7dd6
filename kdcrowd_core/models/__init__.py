"""Models of the KD-Crowd trainer: classifier heads and crowd models (teachers).

Both families are registered by name, so the trainer, the CLI and the dashboard
pick them from one registry:

- heads (:func:`build_classifier`): ``"linear"``, ``"mlp"`` (and :class:`EnsembleHead`, the average of several heads);
- crowd models (:func:`build_crowd_model`): ``"prob-transition"``, ``"crowdlayer-mw"``,
  ``"crowdlayer-vw"``, ``"crowdlayer-vb"``, ``"crowdlayer-vw+b"``, ``"conal"``, ``"aggnet"``, and the recent peers
  (:mod:`.peers`) ``"annot-mix"`` (ECAI 2024) and ``"geocrowdnet-f"`` (ICLR 2023).
"""
from .heads import EnsembleHead, Head, Standardizer, available_classifiers, build_classifier, register_classifier
from .crowd import (AggNet, CoNAL, CrowdLayerMW, CrowdLayerVB, CrowdLayerVW, CrowdLayerVWB, CrowdModel,
                    ProbTransition, available_crowd_models, build_crowd_model, register_crowd_model)
from .peers import AnnotMix, GeoCrowdNetF

__all__ = ["EnsembleHead", "Head", "Standardizer", "available_classifiers", "build_classifier", "register_classifier",
           "CrowdModel", "ProbTransition", "AggNet", "CrowdLayerMW", "CrowdLayerVW", "CrowdLayerVB",
           "CrowdLayerVWB", "CoNAL", "AnnotMix", "GeoCrowdNetF", "available_crowd_models", "build_crowd_model", "register_crowd_model"]
