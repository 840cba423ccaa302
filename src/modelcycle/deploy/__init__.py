"""Deployments: served names routed to model versions (canary, A/B, shadow), prediction
logs and feedback, batch scoring, and manifests for scaling out."""
