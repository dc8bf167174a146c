"""The text forms of config.train_data, test_data and manual_dirs (and evaluate's flags)."""
import pytest

from resunetpp_jax.data import specs


def test_data_items_parse_into_name_and_split():
  assert specs.parse_data('kvasir_seg:pranet_train + cvc_clinicdb:pranet_train', 'k') == [
      ('kvasir_seg', 'pranet_train'), ('cvc_clinicdb', 'pranet_train')]
  assert specs.parse_data('kvasir_seg:test,cvc_colondb:all', 'k', specs.LIST) == [
      specs.DataSpec('kvasir_seg', 'test'), specs.DataSpec('cvc_colondb', 'all')]
  assert specs.parse_data(['kvasir_seg:test', 'etis_larib:all'], 'k', specs.LIST)[1] == ('etis_larib', 'all')
  assert str(specs.DataSpec('cvc_300', 'all')) == 'cvc_300:all'
  assert not specs.parse_data('', 'k')


@pytest.mark.parametrize('text, message', [
    ('kvasir_seg', r"config.train_data item 'kvasir_seg': expected NAME:SPLIT"),
    ('kvasir_seg:train+:valid', r"item ':valid': expected NAME:SPLIT"),
    ('kvasir_seg:train+kvasir_seg:train', 'names kvasir_seg:train twice'),
])
def test_bad_data_items_are_named(text, message):
  with pytest.raises(ValueError, match=message):
    specs.parse_data(text, 'config.train_data')


def test_manual_dirs_parse_and_join():
  text = 'kvasir_seg=/data/Kvasir-SEG,cvc_clinicdb=/data/CVC=1'
  folders = specs.parse_manual_dirs(text, 'k')
  assert folders == {'kvasir_seg': '/data/Kvasir-SEG', 'cvc_clinicdb': '/data/CVC=1'}
  assert specs.join_manual_dirs(folders) == text
  assert specs.parse_manual_dirs(['cvc_300=/d'], 'k') == {'cvc_300': '/d'}
  with pytest.raises(ValueError, match="--manual_dirs item '/data/CVC': expected NAME=FOLDER"):
    specs.parse_manual_dirs(['/data/CVC'], '--manual_dirs')
  with pytest.raises(ValueError, match='two folders for kvasir_seg'):
    specs.parse_manual_dirs('kvasir_seg=/a,kvasir_seg=/b', 'k')
