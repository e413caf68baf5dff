"""Training services: checkpoints and resume, NaN guard, metric files, progress, summaries, predictions, samples."""
