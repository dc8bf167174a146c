"""CVC-ClinicDB: 612 colonoscopy video frames with polyp masks."""
from resunetpp_jax.data.cvc_clinicdb.cvc_clinicdb_dataset_builder import CvcClinicdb
