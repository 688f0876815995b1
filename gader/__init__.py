"""GADER: gait detection and recognition in the wild.

The method as a library (PyTorch and NumPy, no web code). The matching service lives in the
separate ``service`` package and calls into this one.
"""

__version__ = "0.1.0"
