"""Deprecated: the evaluation moved to ``smallunet.distances`` (Fréchet distance, KID,
the FID-like score), ``smallunet.classifier`` (the features of an image set) and
``smallunet.protocol`` (the protocol with its cached reference, floors and sampling).
This module re-exports the names it held."""
from ._moved import warn_moved
from .classifier import (CLASSIFIER_SHA256, FashionClassifier, classify, feature_statistics,  # noqa: F401
                         features, load_classifier)
from .device import bf16_autocast, model_device  # noqa: F401
from .distances import fid, frechet_distance, kid  # noqa: F401
from .protocol import (PROTOCOL, SAMPLERS, evaluate, fid_floor, fid_vs_steps, floor, generate,  # noqa: F401
                       precision_context, reference_features, reference_statistics)
from .sampling import samples, samples_heun  # noqa: F401

warn_moved("smallunet.evaluation", "smallunet.distances, smallunet.classifier and smallunet.protocol")
