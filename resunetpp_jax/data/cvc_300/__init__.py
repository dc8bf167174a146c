"""CVC-300: the 60 CVC-ColonDB-derived test frames of EndoScene."""
from resunetpp_jax.data.cvc_300.cvc_300_dataset_builder import Cvc300
