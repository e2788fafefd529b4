"""A stand-in for torchvision in the older-torch CI leg only (.ci/old_torch.sh).

smalldiffusion 0.5.0, the reference the maths tests compare against, imports torchvision
at import time for its image datasets (``smalldiffusion/data.py`` builds a
``transforms.Compose`` at module level). No torchvision wheel runs beside the torch 2.13
CPU file of that leg (PyPI's fails with "operator torchvision::nms does not exist"), and
the tests never use smalldiffusion's datasets, so this stub lets the import succeed.
Using any of it raises. It is on PYTHONPATH only in that leg, and only when the real
torchvision cannot be imported.
"""
from . import transforms  # noqa: F401

__version__ = "0.0+ci-stub"
