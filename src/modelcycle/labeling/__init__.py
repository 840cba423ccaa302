"""Labeling: annotation projects over dataset versions."""
