"""CVC-ColonDB: 380 colonoscopy frames with polyp masks."""
from resunetpp_jax.data.cvc_colondb.cvc_colondb_dataset_builder import CvcColondb
