"""Training: train specs, estimators, cross-validation, tuning."""
