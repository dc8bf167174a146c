"""What a run leaves on disk and what a model file holds: orbax checkpoints, the workdir config, model files."""
