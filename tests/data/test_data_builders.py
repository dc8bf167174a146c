"""Dataset builders: layouts, bad input, splits and the prepare summary."""
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
import pytest
import tifffile

from helpers.damage import write_tiff_declaring
from resunetpp_jax.data import image_io
from resunetpp_jax.data import image_mask_pairs
from resunetpp_jax.data import polyp_folder_builder
from resunetpp_jax.data import prepare
from resunetpp_jax.data import registry

ALL = 'train+valid+test'


def _pair(seed, height=20, width=24):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  mask = np.zeros((height, width), np.uint8)
  mask[2:2 + seed % 10 + 3, 4:14] = 255
  return image, mask


def _write(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix in ('.tif', '.tiff'):
    tifffile.imwrite(path, array, photometric='rgb' if array.ndim == 3
                     else 'minisblack')
  else:
    Image.fromarray(array).save(path)


def _folder(root, count, image_ext='.png', mask_ext='.png'):
  for index in range(count):
    image, mask = _pair(index)
    _write(root / 'images' / f'img{index:02d}{image_ext}', image)
    _write(root / 'masks' / f'img{index:02d}{mask_ext}', mask)
  return root


def _examples(builder, split=ALL):
  return {ex['name'].decode(): ex for ex in builder.as_data_source(split)}


def _summary(builder):
  return builder.info.metadata['prepare_summary']


def test_folder_pairs_stores_exact_pixels_and_counts_conversions(tmp_path):
  root = _folder(tmp_path / 'mine', 10, image_ext='.jpg')
  gray = _pair(20)[0][:, :, 0]
  _write(root / 'images' / 'gray.png', gray)
  _write(root / 'masks' / 'gray.bmp', np.zeros((20, 24), np.uint8))  # Empty.
  rgba = np.dstack([_pair(21)[0], np.full((20, 24), 9, np.uint8)])
  _write(root / 'images' / 'rgba.png', rgba)
  _write(root / 'masks' / 'rgba.png', _pair(21)[1] // 255)  # 0/1 label map.
  _write(root / 'images' / 'deep.tif', _pair(22)[0].astype(np.uint16) * 257)
  _write(root / 'masks' / 'deep.tif', _pair(22)[1])

  builder = registry.prepare('folder_pairs', str(tmp_path / 'tfds'), str(root))
  summary = _summary(builder)
  assert summary['pairs'] == 13
  assert summary['image_conversions'] == {'grayscale': 1, 'alpha dropped': 1,
                                          '16-bit': 1}
  assert summary['mask_conversions'] == {'label map': 1}
  assert summary['empty_masks'] == ['gray']
  assert summary['split_sizes'] == {'train': 11, 'valid': 1, 'test': 1}
  examples = _examples(builder)
  assert len(examples) == 13
  np.testing.assert_array_equal(examples['rgba']['image'], rgba[:, :, :3])
  np.testing.assert_array_equal(examples['rgba']['mask'][:, :, 0],
                                _pair(21)[1])
  np.testing.assert_array_equal(examples['deep']['image'], _pair(22)[0])
  np.testing.assert_array_equal(examples['gray']['image'],
                                np.dstack([gray] * 3))
  np.testing.assert_array_equal(
      examples['img03']['image'],
      image_io.read_image(root / 'images' / 'img03.jpg'))
  np.testing.assert_array_equal(examples['img03']['mask'][:, :, 0],
                                _pair(3)[1])
  assert (examples['img03']['height'], examples['img03']['width']) == (20, 24)


def test_unpaired_and_foreign_files_are_skipped_counted_and_named(tmp_path):
  root = _folder(tmp_path / 'mine', 6)
  _write(root / 'images' / 'lonely.png', _pair(30)[0])
  _write(root / 'masks' / 'orphan.png', _pair(31)[1])
  (root / 'images' / 'Thumbs.db').write_bytes(b'\0')
  (root / 'masks' / '.DS_Store').write_bytes(b'\0')
  (root / 'images' / 'more.png').mkdir()
  os.mkfifo(root / 'masks' / 'pipe.png')  # Reading it would wait forever.
  builder = registry.prepare('folder_pairs', str(tmp_path / 'tfds'), str(root))
  summary = _summary(builder)
  assert summary['pairs'] == 6
  assert [p.split('/')[-1] for p in summary['images_without_mask']] == [
      'lonely.png']
  assert [p.split('/')[-1] for p in summary['masks_without_image']] == [
      'orphan.png']
  assert sorted(p[len(str(root)) + 1:] for p in summary['ignored_files']) == [
      'images/Thumbs.db', 'images/more.png/', 'masks/.DS_Store',
      'masks/pipe.png']
  lines = '\n'.join(prepare.summary_lines(builder))
  assert 'images without mask (skipped): 1 (' in lines
  assert 'train: 4 examples' in lines


def test_duplicates_are_kept_in_one_split(tmp_path):
  root = _folder(tmp_path / 'mine', 20)
  image, mask = _pair(0)
  for copy in ('dup_a', 'dup_b', 'dup_c'):
    _write(root / 'images' / f'{copy}.png', image)
    _write(root / 'masks' / f'{copy}.png', mask)
  builder = registry.prepare('folder_pairs', str(tmp_path / 'tfds'), str(root))
  assert _summary(builder)['duplicate_groups'] == [
      ['dup_a', 'dup_b', 'dup_c', 'img00']]
  split_of = {name: split for split in ('train', 'valid', 'test')
              for name in _examples(builder, split)}
  assert len(split_of) == 23
  assert len({split_of[name] for name in ('dup_a', 'dup_b', 'dup_c',
                                          'img00')}) == 1


@pytest.mark.parametrize('problem, message', [
    ('truncated', 'corrupt, truncated'),
    ('size', 'is 24x20 but its image'),
    ('twin', 'Two files named'),
])
def test_unusable_input_stops_with_the_file_named(tmp_path, problem, message):
  root = _folder(tmp_path / 'mine', 4)
  if problem == 'truncated':
    path = root / 'images' / 'img01.png'
    path.write_bytes(path.read_bytes()[:200])
  elif problem == 'size':
    _write(root / 'images' / 'img02.png', _pair(2, height=30)[0])
  else:
    _write(root / 'masks' / 'img03.jpg', _pair(3)[1])
  with pytest.raises((ValueError, image_io.ImageReadError), match=message):
    registry.prepare('folder_pairs', str(tmp_path / 'tfds'), str(root))


def test_a_soft_mask_is_counted_and_named_as_not_binary(tmp_path):
  root = _folder(tmp_path / 'mine', 4, mask_ext='.jpg')  # JPEG ringing.
  _write(root / 'images' / 'soft.png', _pair(9)[0])
  _write(root / 'masks' / 'soft.png',
         np.tile(np.linspace(0, 255, 24).astype(np.uint8), (20, 1)))
  summary = _summary(registry.prepare('folder_pairs', str(tmp_path / 'tfds'),
                                      str(root)))
  assert summary['mask_conversions'] == {'off values': 4, 'not binary': 1}
  assert summary['not_binary_masks'] == ['soft']
  line = ('masks not binary (thresholded at 128; check that they are masks,'
          ' not probability maps): ')
  assert f'{line}1 (soft)' in image_mask_pairs.PrepareSummary(**summary).lines()
  # A summary stored before the field existed still loads.
  del summary['not_binary_masks']
  assert f'{line}0' in image_mask_pairs.PrepareSummary(**summary).lines()


def _staging(data_dir, pid):
  """A staging folder as process `pid` on this host makes it."""
  folder = (data_dir / 'downloads' /
            f'folder_pairs-staging-{socket.gethostname()}-{pid}-x1y2')
  folder.mkdir(parents=True)
  (folder / '0.image.npy').write_bytes(b'\0' * 100)
  return folder


def test_a_pixel_bomb_stops_preparation_and_no_staging_folder_remains(
    tmp_path):
  root = _folder(tmp_path / 'mine', 4)
  write_tiff_declaring(root / 'images' / 'bomb.tif', 60000, 60000)
  _write(root / 'masks' / 'bomb.png', _pair(0)[1])
  data_dir = tmp_path / 'tfds'
  ended = subprocess.Popen([sys.executable, '-c', ''])
  ended.wait()
  killed_earlier = _staging(data_dir, ended.pid)
  running = _staging(data_dir, os.getpid())
  with pytest.raises(image_io.ImageReadError,
                     match='bomb.tif declares a 60000x60000 image'):
    registry.prepare('folder_pairs', str(data_dir), str(root))
  # The folder of a preparation still running is kept; the others are gone.
  assert list((data_dir / 'downloads').glob('*staging*')) == [running]
  assert not killed_earlier.exists()


def test_missing_manual_dir_explains_download_and_layout(tmp_path):
  with pytest.raises(image_mask_pairs.DatasetFolderError) as error:
    registry.prepare('kvasir_seg', str(tmp_path / 'tfds'), '')
  assert "config.manual_dirs='kvasir_seg=FOLDER'" in str(error.value)
  assert 'https://datasets.simula.no' in str(error.value)
  assert 'images/NAME.ext with mask masks/NAME.ext' in str(error.value)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(image_mask_pairs.DatasetFolderError,
                     match='Ground Truth/NAME.ext'):
    registry.prepare('cvc_clinicdb', str(tmp_path / 'tfds'),
                     str(tmp_path / 'empty'))
  with pytest.raises(image_mask_pairs.DatasetFolderError,
                     match='PraNet.*TestDataset.*CVC-300'):
    registry.prepare('cvc_300', str(tmp_path / 'tfds'), str(tmp_path / 'empty'))
  with pytest.raises(ValueError, match="config.manual_dirs='folder_pairs=FOLDER'"):
    registry.prepare('folder_pairs', str(tmp_path / 'tfds'), '')
  with pytest.raises(ValueError, match='choose one of'):
    registry.prepare('imagenet', str(tmp_path / 'tfds'), '')


def test_preparing_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch):
  temporary = tmp_path / 'tmp'
  temporary.mkdir()
  monkeypatch.setattr(tempfile, 'tempdir', str(temporary))
  builder = registry.prepare('folder_pairs', str(tmp_path / 'tfds'), str(_folder(tmp_path / 'pairs', 4)))
  assert builder.info.splits[ALL].num_examples == 4
  with pytest.raises(image_mask_pairs.DatasetFolderError):  # A builder made, then refused: not prepared.
    registry.prepare('kvasir_seg', str(tmp_path / 'tfds'), '')
  assert not list(temporary.iterdir())


def test_folder_pairs_keeps_each_folder_apart(tmp_path):
  first = registry.prepare('folder_pairs', str(tmp_path / 'tfds'),
                           str(_folder(tmp_path / 'one', 4)))
  second = registry.prepare('folder_pairs', str(tmp_path / 'tfds'),
                            str(_folder(tmp_path / 'two', 7)))
  assert first.data_dir != second.data_dir
  assert first.info.splits[ALL].num_examples == 4
  assert second.info.splits[ALL].num_examples == 7


def test_official_layouts(tmp_path):
  """Each real builder finds pairs in its official download layout."""
  layouts = {
      'cvc_clinicdb': ('Original/{}.tif', 'Ground Truth/{}.tif'),
      'cvc_colondb': ('{}.tiff', 'p{}.tiff'),
      'etis_larib': ('ETIS-LaribPolypDB/{}.tif', 'Ground Truth/p{}.tif'),
      'kvasir_seg': ('images/{}.jpg', 'masks/{}.jpg'),
      'cvc_300': ('images/{}.png', 'masks/{}.png'),  # The PraNet copy.
  }
  for dataset, (image_name, mask_name) in layouts.items():
    root = tmp_path / dataset
    for index in range(1, 6):
      image, mask = _pair(index)
      _write(root / image_name.format(index), image)
      _write(root / mask_name.format(index), mask)
    builder = registry.prepare(dataset, str(tmp_path / 'tfds'), str(root))
    examples = _examples(builder)
    assert sorted(examples) == ['1', '2', '3', '4', '5'], dataset
    if not image_name.endswith('.jpg'):
      np.testing.assert_array_equal(examples['2']['image'], _pair(2)[0])
    np.testing.assert_array_equal(examples['2']['mask'][:, :, 0] > 0,
                                  _pair(2)[1] > 0)
    # A partial folder cannot form the PraNet splits: said, not hidden.
    status = _summary(builder)['pranet_splits']
    assert status.startswith('omitted') or status == (
        'not defined for this dataset'), dataset


def test_seeded_split_sizes_and_determinism():
  for total, sizes in ((1000, (800, 100, 100)), (612, (490, 61, 61)),
                       (380, (304, 38, 38)), (196, (156, 20, 20))):
    groups = [[f'{i:04d}'] for i in range(total)]
    splits = image_mask_pairs.seeded_split(groups)
    assert tuple(map(len, (splits['train'], splits['valid'],
                           splits['test']))) == sizes
    assert sorted(sum(splits.values(), [])) == [g[0] for g in groups]
    assert splits == image_mask_pairs.seeded_split(groups)


def test_pranet_lists_ship_with_the_package():
  kvasir = [polyp_folder_builder.read_split_list(f'pranet_kvasir_{s}.txt')
            for s in ('train', 'test')]
  clinic = [polyp_folder_builder.read_split_list(f'pranet_clinicdb_{s}.txt')
            for s in ('train', 'test')]
  assert list(map(len, kvasir)) == [900, 100]
  assert list(map(len, clinic)) == [550, 62]
  assert not set(kvasir[0]) & set(kvasir[1])
  assert set(clinic[0]) | set(clinic[1]) == {str(i) for i in range(1, 613)}


def test_reuse_from_another_folder_is_reported(tmp_path, caplog):
  data_dir = str(tmp_path / 'tfds')
  first = registry.prepare('kvasir_seg', data_dir,
                           str(_folder(tmp_path / 'a', 5)))
  second = registry.prepare('kvasir_seg', data_dir,
                            str(_folder(tmp_path / 'b', 8)))
  assert second.info.splits[ALL].num_examples == 5
  assert second.data_dir == first.data_dir
  assert 'not from manual_dir=' in caplog.text
