"""`python -m tformer.cli ...`: the `tformer` command, for torchrun and environments without the script."""

import sys

from tformer.cli import main

sys.exit(main())
