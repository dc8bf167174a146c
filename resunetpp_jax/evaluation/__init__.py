"""Scoring: pixel metrics during training, per-image and literature metrics at original size, and the tables."""
