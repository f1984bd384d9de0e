import sys

from wandb_core_rs._cli import main

sys.exit(main())
