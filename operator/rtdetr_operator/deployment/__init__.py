"""RTDETRDeployment: per-GPU TensorRT engines, Triton pools, autoscaling and rollouts."""
