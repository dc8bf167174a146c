"""The page: a Segment view (images and videos) and an Explore view (an evaluation, image by image).

Every handler turns a refused input into one line in the page's status box (elem_id *-status) rather than an
exception trace; the model's probabilities are kept in the session so the threshold slider re-thresholds
without running the model again.
"""
import os
import uuid
import zipfile

import gradio as gr
import numpy as np

from resunetpp_jax import errors
from resunetpp_jax.app import explore
from resunetpp_jax.app import service as service_lib
from resunetpp_jax.data import image_io
from resunetpp_jax.inference import predictor as predictor_lib
from resunetpp_jax.runtime import outputs

ACCEPTED = list(service_lib.IMAGE_EXTENSIONS + service_lib.VIDEO_EXTENSIONS)


def _output_dir(models: service_lib.Models) -> str:
  folder = os.path.join(models.default.upload_root, 'outputs', uuid.uuid4().hex)
  os.makedirs(folder)
  return folder


def _zip_masks(results: list[service_lib.Result], threshold: float, folder: str) -> str:
  path = os.path.join(folder, 'masks.zip')

  def write(temporary: str):
    with zipfile.ZipFile(temporary, 'w', zipfile.ZIP_DEFLATED) as archive:
      for result in results:
        stem = os.path.splitext(result.name)[0]
        archive.writestr(f'{stem}.png', service_lib.mask_png(result.mask(threshold)))
  outputs.write_with(path, write)
  return path


def _numbers_table(results: list[service_lib.Result], threshold: float) -> list[list]:
  table = []
  for result in results:
    n = result.numbers(threshold)
    table.append([result.name, n['width'], n['height'], n['polyps'], n['area_pixels'],
                  round(100 * n['area_fraction'], 2), str(n['boxes'])])
  return table


NUMBER_HEADERS = ['image', 'width', 'height', 'polyps', 'area (pixels)', 'area (%)', 'boxes [x, y, w, h]']


def _views(result: service_lib.Result, threshold: float):
  mask = result.mask(threshold)
  return result.image, service_lib.overlay(result.image, mask), service_lib.heat_map(result.probabilities)


def build(models: service_lib.Models) -> gr.Blocks:
  """The Blocks of both views; `models.default` is the server's model."""
  with gr.Blocks(title='ResUNet++ polyp segmentation') as demo:
    gr.Markdown('# Polyp segmentation\nSegment colonoscopy images and videos, or explore an evaluation image by'
                ' image. The app has no authentication: keep it on 127.0.0.1 unless you trust the network.')
    with gr.Tab('Segment', elem_id='segment-tab'):
      with gr.Row():
        model_source = gr.Textbox(label='Model', value=service_lib.SHIPPED, elem_id='model-source',
                                  info='"shipped model", a model file (.safetensors, .onnx) or a training workdir'
                                       ' on the server')
        checkpoint = gr.Radio(['best', 'latest'], value='best', label='Workdir checkpoint')
      files = gr.File(label='Images (jpg, png, tif) or one video', file_count='multiple', file_types=ACCEPTED,
                      elem_id='upload')
      run_button = gr.Button('Segment', variant='primary', elem_id='segment-button')
      status = gr.Markdown('', elem_id='segment-status')
      threshold = gr.Slider(0.05, 0.95, value=predictor_lib.THRESHOLD, step=0.05, label='Threshold',
                            elem_id='threshold')
      picked = gr.Dropdown([], label='Image shown', elem_id='picked')
      with gr.Row():
        shown_image = gr.Image(label='Image', format='png', elem_id='view-image', interactive=False)
        shown_overlay = gr.Image(label='Overlay', format='png', elem_id='view-overlay', interactive=False)
        shown_heat = gr.Image(label='Probability', format='png', elem_id='view-heat', interactive=False)
      numbers = gr.Dataframe(headers=NUMBER_HEADERS, label='Polyps per image', elem_id='numbers',
                             interactive=False)
      downloads = gr.File(label='Downloads (masks.zip; for a video the overlay video and the CSV)',
                          file_count='multiple', elem_id='downloads', interactive=False)
      overlay_video = gr.Video(label='Overlay video', elem_id='overlay-video', interactive=False)
      results_state = gr.State([])

      def segment(paths, source, checkpoint_name, threshold_value, progress=gr.Progress()):
        empty = ([], gr.update(choices=[], value=None), None, None, None, [], None, None)
        if not paths:
          return ('Drop one or more images, or one video, first.', *empty)
        try:
          name, service = models.get(source, checkpoint_name)
        except errors.UserError as e:
          return (f'**Model refused:** {e}', *empty)
        paths = [p if isinstance(p, str) else p.name for p in paths]
        folder = _output_dir(models)
        videos = [p for p in paths if p.lower().endswith(service_lib.VIDEO_EXTENSIONS)]
        if videos:
          if len(paths) > 1:
            return ('Drop one video alone (not with other files).', *empty)
          progress(0, desc='Segmenting the video')
          shown = os.path.basename(videos[0])
          try:
            result = service.segment_video(videos[0], shown, folder)
          except (service_lib.UploadError, service_lib.BusyError, errors.UserError) as e:
            return (f'**Refused:** {e}', *empty)
          message = f'{result.frames} frames of {shown} segmented with {name} ({result.seconds:.1f} s).'
          if result.broken:
            message += f' {len(result.broken)} frames could not be decoded (black in the video, broken=1).'
          return (message, [], gr.update(choices=[], value=None), None, None, None, [],
                  [result.overlay_path, result.csv_path], result.overlay_path)
        results, refused = [], []
        for path in progress.tqdm(paths, desc='Segmenting'):
          shown = os.path.basename(path)
          try:
            safe, image = service.decode_file(path, shown)
            results.append(service.predict(safe, image))
          except (service_lib.UploadError, service_lib.BusyError) as e:
            refused.append(str(e))
        message = f'{len(results)} of {len(paths)} images segmented with {name}.'
        if refused:
          message += '\n\n**Refused:** ' + ' '.join(refused)
        if not results:
          return (message, *empty)
        names = [r.name for r in results]
        return (message, results, gr.update(choices=names, value=names[0]), *_views(results[0], threshold_value),
                _numbers_table(results, threshold_value), [_zip_masks(results, threshold_value, folder)], None)

      outputs = [status, results_state, picked, shown_image, shown_overlay, shown_heat, numbers, downloads,
                 overlay_video]
      run_button.click(segment, [files, model_source, checkpoint, threshold], outputs)

      def show(results, name, threshold_value):
        for result in results:
          if result.name == name:
            return _views(result, threshold_value)
        return None, None, None

      picked.change(show, [results_state, picked, threshold], [shown_image, shown_overlay, shown_heat])

      def rethreshold(results, name, threshold_value):
        """No model run: the kept probabilities at the new threshold."""
        if not results:
          return None, [], None
        result = next((r for r in results if r.name == name), results[0])
        return (service_lib.overlay(result.image, result.mask(threshold_value)),
                _numbers_table(results, threshold_value), [_zip_masks(results, threshold_value, _output_dir(models))])

      threshold.change(rethreshold, [results_state, picked, threshold], [shown_overlay, numbers, downloads])

    with gr.Tab('Explore an evaluation', elem_id='explore-tab'):
      _build_explore(models)
  return demo


def _build_explore(models: service_lib.Models):
  gr.Markdown('Open the folder of `resunetpp evaluate`\'s JSON files, or evaluate a dataset folder (images/ and'
              ' masks/ of the same names) here. Give the dataset folder to see the pictures of an image.')
  with gr.Row():
    eval_folder = gr.Textbox(label='Evaluation folder or JSON file', elem_id='eval-folder')
    open_button = gr.Button('Open evaluation', elem_id='open-eval')
  with gr.Row():
    data_folder = gr.Textbox(label='Dataset folder (images/, masks/)', elem_id='data-folder')
    limit = gr.Number(label='Images (0: all)', value=0, precision=0, elem_id='eval-limit')
    model_a = gr.Textbox(label='Model A', value=service_lib.SHIPPED, elem_id='model-a')
    model_b = gr.Textbox(label='Model B (to compare; optional)', value='', elem_id='model-b')
    evaluate_button = gr.Button('Evaluate the folder', elem_id='run-eval')
  status = gr.Markdown('', elem_id='explore-status')
  split = gr.Dropdown([], label='Split', elem_id='split')
  with gr.Row():
    sort_by = gr.Dropdown(list(explore.COLUMNS), value='dice', label='Sort by', elem_id='sort-by')
    descending = gr.Checkbox(False, label='Descending', elem_id='descending')
    name_contains = gr.Textbox(label='Name contains', elem_id='name-filter')
    dice_below = gr.Slider(0, 1, value=1, step=0.05, label='Dice at most', elem_id='dice-below')
  table = gr.Dataframe(headers=list(explore.COLUMNS) + ['dice_b'], label='Images (click one)',
                       elem_id='eval-table', interactive=False)
  with gr.Row():
    picture_a = gr.Image(label='Model A: yellow found, green missed, red false alarm', format='png',
                         elem_id='error-a', interactive=False)
    picture_b = gr.Image(label='Model B', format='png', elem_id='error-b', interactive=False)
  scatter = gr.ScatterPlot(x='dice_a', y='dice_b', label='Per-image Dice, model A against model B',
                           elem_id='scatter', x_lim=[0, 1], y_lim=[0, 1])
  with gr.Row():
    export_button = gr.Button('Export PraNet-style result maps of model A (8-bit PNG, zipped)',
                              elem_id='export-maps')
    export_file = gr.File(label='Result maps', elem_id='maps-file', interactive=False)
  results_state = gr.State({})  # split -> result
  compare_state = gr.State({})  # image name -> Dice of model B

  def table_rows(results, split_name, compare, sort_column, desc, contains, below):
    if not results or split_name not in results:
      return []
    rows = explore.sort_and_filter(explore.rows(results[split_name]), sort_column, desc, contains or '',
                                   below)
    return [row + [compare.get(row[0], '')] for row in rows]

  def open_evaluation(folder, sort_column, desc, contains, below):
    try:
      results = explore.read_evaluation(folder or '')
    except errors.UserError as e:
      return f'**Cannot open:** {e}', {}, gr.update(choices=[], value=None), []
    first = next(iter(results))
    summary = ', '.join(f'{k}: {len(r["images"])} images, mean Dice {r.get("mean_dice", float("nan")):.3f}'
                        for k, r in results.items())
    return (f'Opened {summary}.', results, gr.update(choices=list(results), value=first),
            table_rows(results, first, {}, sort_column, desc, contains, below))

  filters = [sort_by, descending, name_contains, dice_below]
  open_button.click(open_evaluation, [eval_folder] + filters, [status, results_state, split, table])

  def evaluate(folder, count, source_a, source_b, sort_column, desc, contains, below, progress=gr.Progress()):
    failed = (gr.update(choices=[], value=None), {}, {}, [], None)
    try:
      name_a, service_a = models.get(source_a)
      output = os.path.join(_output_dir(models), 'evaluation')
      limit_count = int(count) if count else None

      def step(done, total):
        progress(done / total, desc=f'Model A: {done} / {total} images')

      with service_a.slot():
        result = explore.evaluate_folder(service_a.predictor, folder or '', os.path.join(output, 'folder.json'),
                                         model_name=name_a, limit=limit_count, progress=step)
      compare, plot = {}, None
      if (source_b or '').strip():
        name_b, service_b = models.get(source_b)

        def step_b(done, total):
          progress(done / total, desc=f'Model B: {done} / {total} images')

        with service_b.slot():
          result_b = explore.evaluate_folder(service_b.predictor, folder, os.path.join(output, 'folder_b.json'),
                                             model_name=name_b, limit=limit_count, progress=step_b)
        compare = {r['name']: round(r['dice'], 4) for r in result_b['images']}
        import pandas as pd  # pylint: disable=import-outside-toplevel  # Gradio's own dependency.
        plot = pd.DataFrame({'name': [r['name'] for r in result['images']],
                             'dice_a': [r['dice'] for r in result['images']],
                             'dice_b': [compare[r['name']] for r in result['images']]})
    except (errors.UserError, service_lib.BusyError) as e:
      return (f'**Cannot evaluate:** {e}', *failed)
    results = {'folder': result}
    message = (f'Evaluated {len(result["images"])} images of {folder} with {name_a}: mean Dice'
               f' {result["mean_dice"]:.3f}. JSON: {output}/folder.json')
    if compare:
      message += f'; model B mean Dice {np.mean(list(compare.values())):.3f}'
    return (message, gr.update(choices=['folder'], value='folder'), results, compare,
            table_rows(results, 'folder', compare, sort_column, desc, contains, below), plot)

  evaluate_button.click(evaluate, [data_folder, limit, model_a, model_b] + filters,
                        [status, split, results_state, compare_state, table, scatter])
  for control in [split] + filters:
    getattr(control, 'release' if control is dice_below else 'change')(
        table_rows, [results_state, split, compare_state] + filters, table)

  def pick(folder, source_a, source_b, evt: gr.SelectData):
    name = evt.row_value[0] if evt.row_value else None
    if not name:
      return 'Click a row of the table.', None, None
    try:
      pairs = explore.list_pairs(folder or '')
      if name not in pairs:
        return f'{name} is not in {folder}/images and masks.', None, None
      _, service_a = models.get(source_a)
      with service_a.slot():
        picture, dice = explore.error_picture(service_a.predictor, *pairs[name])
      message, picture_b = f'{name}: model A Dice {dice:.3f}', None
      if (source_b or '').strip():
        _, service_b = models.get(source_b)
        with service_b.slot():
          picture_b, dice_b = explore.error_picture(service_b.predictor, *pairs[name])
        message += f', model B Dice {dice_b:.3f}'
    except (errors.UserError, service_lib.BusyError) as e:
      return f'**Cannot show {name}:** {e}', None, None
    return message + ' (yellow: found, green: missed, red: false alarm).', picture, picture_b

  table.select(pick, [data_folder, model_a, model_b], [status, picture_a, picture_b])

  def brushed(results, split_name, compare, evt: gr.SelectData):
    """A range of Dice A brushed on the scatter plot: the table keeps those images (click one to open it)."""
    if not results or split_name not in results or not isinstance(evt.index, (list, tuple)):
      return 'Brush a range of Dice A on the plot.', []
    low, high = sorted(float(x) for x in evt.index[:2])
    rows = [row + [compare.get(row[0], '')] for row in explore.rows(results[split_name]) if low <= row[1] <= high]
    return (f'{len(rows)} images with Dice A in [{low:.3f}, {high:.3f}]: click a row to open it.',
            sorted(rows, key=lambda row: row[1]))

  scatter.select(brushed, [results_state, split, compare_state], [status, table])

  def export_maps(folder, count, source_a, progress=gr.Progress()):
    try:
      name_a, service_a = models.get(source_a)
      pairs = list(explore.list_pairs(folder or '').items())[:int(count) if count else None]
      path = os.path.join(_output_dir(models), 'result_maps.zip')

      def write(temporary: str):
        with zipfile.ZipFile(temporary, 'w', zipfile.ZIP_DEFLATED) as archive:
          for stem, (image_path, _) in progress.tqdm(pairs, desc='Result maps'):
            archive.writestr(f'{stem}.png', image_io.encode_png(
                explore.result_map(service_a.predictor, image_io.read_image(image_path))))
      with service_a.slot():
        outputs.write_with(path, write)
    except (errors.UserError, service_lib.BusyError) as e:
      return f'**Cannot export:** {e}', None
    return f'{len(pairs)} result maps of {name_a} (PraNet MyTest.py format) in result_maps.zip.', path

  export_button.click(export_maps, [data_folder, limit, model_a], [status, export_file])
