"""The closed loop: maintenance policies and runs (see `modelcycle.loop.service`)."""
