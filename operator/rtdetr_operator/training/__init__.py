"""Reconciling RTDETRTraining: pure planning (resolve, manifests, observe, plan) + thin I/O."""
