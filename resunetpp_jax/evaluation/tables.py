"""The tables `evaluate` prints: every number per dataset/split, and the papers' table (PraNet's Table 1 columns)."""
from typing import Any
from typing import Mapping
from typing import Sequence

_TABLE_COLUMNS = ('num_images', 'dice', 'iou', 'mean_dice', 'mean_iou',
                  'mdice', 'miou', 'precision', 'recall')
# The columns of PraNet's Table 1 (and the papers after it): key, text header,
# markdown header.
_PAPER_COLUMNS = (
    ('mdice', 'mDice', 'mDice'), ('miou', 'mIoU', 'mIoU'),
    ('weighted_fmeasure', 'F^w_β', 'F<sup>w</sup><sub>β</sub>'),
    ('smeasure', 'S_α', 'S<sub>α</sub>'),
    ('max_emeasure', 'E^max_ξ', 'E<sup>max</sup><sub>ξ</sub>'),
    ('mae', 'MAE', 'MAE'))


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
  """A fixed-width table: one row per dataset/split."""
  header = ['dataset/split'] + list(_TABLE_COLUMNS)
  rows = []
  for result in results:
    row = [f'{result["dataset"]}/{result["split"]}']
    row += [str(result[c]) if c == 'num_images' else f'{result[c]:.4f}'
            for c in _TABLE_COLUMNS]
    rows.append(row)
  widths = [max(len(row[k]) for row in [header] + rows)
            for k in range(len(header))]
  lines = ['  '.join(cell.ljust(w) if k == 0 else cell.rjust(w)
                     for k, (cell, w) in enumerate(zip(row, widths)))
           for row in [header] + rows]
  return '\n'.join(lines)


def _paper_number(value: float) -> str:
  """Three decimals without the leading zero, as the papers print them."""
  text = f'{value:.3f}'
  return text[1:] if text.startswith('0.') else text


def format_paper_table(method: str, results: Sequence[Mapping[str, Any]],
                       markdown: bool = False) -> str:
  """The layout of the published tables (PraNet's Table 1): one row for
  `method`, per dataset/split the columns mDice, mIoU, F^w_beta, S_alpha,
  E^max_xi and MAE, three decimals.

  Args:
    method: the row's name.
    results: one result of `run` per dataset/split, in column order.
    markdown: a markdown table (the dataset named in its first column's
      header) instead of fixed-width text under a line of dataset names.
  """
  values = [method] + [_paper_number(result[key]) for result in results
                       for key, _, _ in _PAPER_COLUMNS]
  datasets = [f'{result["dataset"]}/{result["split"]}' for result in results]
  if markdown:
    header = ['Method'] + [
        f'{dataset} {title}' if k == 0 else title
        for dataset in datasets
        for k, (_, _, title) in enumerate(_PAPER_COLUMNS)]
    return '\n'.join(['| ' + ' | '.join(header) + ' |',
                      '| --- |' + ' ---: |' * (len(header) - 1),
                      '| ' + ' | '.join(values) + ' |'])
  # Every metric column one width, wide enough for the headers and for each
  # dataset's name over its group of columns.
  group = len(_PAPER_COLUMNS)
  longest = max(len(dataset) for dataset in datasets)
  width = max(max(len(title) for _, title, _ in _PAPER_COLUMNS),
              -(-(longest - 2 * (group - 1)) // group))
  method_width = max(len('method'), len(method))
  names = [' ' * method_width] + [
      dataset.ljust(group * width + 2 * (group - 1)) for dataset in datasets]
  header = ['method'.ljust(method_width)] + [
      title.rjust(width) for _ in datasets for _, title, _ in _PAPER_COLUMNS]
  row = [method.ljust(method_width)] + [value.rjust(width)
                                        for value in values[1:]]
  return '\n'.join('  '.join(cells).rstrip() for cells in (names, header, row))
