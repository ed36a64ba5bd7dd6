"""kdcrowd: quality of crowdsourced labels — worker expertise, truth inference, KD-Crowd."""
from .errors import CrowdDataError
from .data import CrowdData, ReadReport
from .simulate import SimulatedCrowd, simulate_crowd

__version__ = "0.1.0"
__all__ = ["CrowdData", "ReadReport", "CrowdDataError", "SimulatedCrowd", "simulate_crowd", "__version__"]
