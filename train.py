"""CoOp-family command line: ``python train.py --root DATA --trainer CoOp --dataset-config-file ... --config-file ...``.

Run without arguments for a short demo on generated data (see README)."""
from vlpeft.cli import main

if __name__ == "__main__":
    main()
