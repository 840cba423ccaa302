"""Evaluation: metrics, plots, slices and feature importance of a model version on a
dataset version; stored so comparing models never recomputes, and gates that decide
whether a version may be promoted."""
