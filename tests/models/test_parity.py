"""Exact parity with the original network: shared/reference/parity_w16.npz (SPEC.md, 'The network')."""
from flax import nnx
import jax
import numpy as np
import pytest

from helpers import reference_weights
from resunetpp_jax.models import ResUNetPP

PARITY_FILTERS = (16, 32, 64, 128, 256)
TOLERANCE = 1e-4


@pytest.fixture(scope='module')
def reference(shared_dir):
  with np.load(shared_dir / 'reference' / 'parity_w16.npz') as npz:
    return {name: npz[name] for name in npz.files}


@pytest.fixture(scope='module')
def loaded_model(reference):
  """Built with shapes only (the loader replaces every array, so real initialisation would be wasted time)."""
  model = nnx.eval_shape(lambda: ResUNetPP(PARITY_FILTERS, rngs=nnx.Rngs(0)))
  reference_weights.load_reference_weights(model, reference)
  return model


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.slow
def test_reference_logits_match(loaded_model, reference, mode):
  model = nnx.clone(loaded_model)  # Train mode updates the BatchNorm statistics.
  # Train mode normalises with the batch's statistics, eval mode with the stored ones.
  model.train() if mode == 'train' else model.eval()
  # Full float32 convolutions: a GPU's default (TF32) misses the reference by up to ~3e-3 in train mode.
  with jax.default_matmul_precision('highest'):
    logits = nnx.jit(lambda m, x: m(x))(model, reference['input'])
  assert len(logits) == 4
  errors = [float(np.max(np.abs(np.asarray(z) - reference[f'logits_{mode}_{k + 1}']))) for k, z in enumerate(logits)]
  print(f'{mode} max abs error per head: {errors}')
  assert all(z.dtype == np.float32 for z in logits)
  assert max(errors) < TOLERANCE, errors


def test_loads_every_array_exactly(loaded_model, reference):
  variables = reference_weights.model_variables(loaded_model)
  np.testing.assert_array_equal(variables['dec.1_2.ca.max_mlp.expand.kernel'][...],
                                reference['dec.1_2.ca.max_mlp.2.kernel'].astype(np.float32))
  np.testing.assert_array_equal(variables['enc.3.short_bn.var'][...], reference['enc.3.short.1.var'].astype(np.float32))
  assert all(v.dtype == np.float32 for v in variables.values())


def test_rejects_missing_weight(loaded_model, reference):
  weights = dict(reference)
  del weights['enc.2.sa.bn.mean']
  with pytest.raises(ValueError, match=r'no reference weight for model array enc\.2\.sa\.bn\.mean'):
    reference_weights.load_reference_weights(loaded_model, weights)


def test_rejects_unused_weight(loaded_model, reference):
  weights = dict(reference, **{'heads.4.kernel': reference['heads.3.kernel']})
  with pytest.raises(ValueError, match=r'reference weight heads\.4\.kernel .* is not in the model'):
    reference_weights.load_reference_weights(loaded_model, weights)


def test_rejects_unknown_layer_name(loaded_model, reference):
  weights = dict(reference, **{'enc.0.ca.shared_mlp.0.kernel': reference['enc.0.ca.avg_mlp.0.kernel']})
  with pytest.raises(ValueError, match='names no layer'):
    reference_weights.load_reference_weights(loaded_model, weights)


def test_rejects_shape_mismatch_without_changing_the_model(loaded_model, reference):
  weights = {name: np.zeros_like(value) for name, value in reference.items()}
  weights['dec.0_3.conv2.kernel'] = np.zeros((3, 3, 16, 17), np.float16)
  with pytest.raises(ValueError, match=r'dec\.0_3\.conv2\.kernel: shape \(3, 3, 16, 17\) != model'):
    reference_weights.load_reference_weights(loaded_model, weights)
  np.testing.assert_array_equal(reference_weights.model_variables(loaded_model)['enc.0.unit.conv1.kernel'][...],
                                reference['enc.0.conv1.kernel'].astype(np.float32))
