"""ETIS-LaribPolypDB: 196 colonoscopy frames with polyp masks."""
from resunetpp_jax.data.etis_larib.etis_larib_dataset_builder import EtisLarib
