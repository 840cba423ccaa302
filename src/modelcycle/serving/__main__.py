"""``python -m modelcycle.serving …``: the same as ``modelcycle serve …``."""

from modelcycle.cli.serve import main

if __name__ == "__main__":
    main()
