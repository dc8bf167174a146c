"""Polyp datasets (TFDS builders), augmentation and the grain input pipeline."""
