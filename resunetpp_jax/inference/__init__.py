"""Segmenting images and videos with a trained model, and exporting it for other runtimes.

`Predictor` is the Python API: `from resunetpp_jax.inference import Predictor`.
"""
from resunetpp_jax.inference.predictor import Predictor
