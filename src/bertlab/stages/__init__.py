"""Optional stages around training: distillation, calibration, thresholds, cross-validation."""
