"""``python -m vlpeft ARGS`` is ``python train.py ARGS`` (for installs without the repository's train.py)."""
from vlpeft.cli import main

if __name__ == "__main__":
    main()
