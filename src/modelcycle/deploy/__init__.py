"""Deployments: served names routed to model versions (canary, A/B, shadow), prediction
logs and feedback, batch scoring, and manifests for scaling out.

- `routes`: the route table a model server serves (plain data, no store).
- `service`: `DeploymentService`, deployments over the metadata store.
- `predlog`: `PredictionLogger`, which buffers records and writes them in the background.
- `segments`: what a prediction record holds, its Parquet segments, reading them back.
- `feedback`: `FeedbackService`, ground truth joined to predictions by request id.
- `kubernetes`: manifests and an image build context for a deployment.
- `batch`: batch scoring of files and table versions.

Nothing is imported here, so a server that needs only `routes` loads nothing else.
"""
