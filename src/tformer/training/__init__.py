"""Training: data pipelines, losses, optimisers and schedules, the loop, checkpoints, distributed."""
