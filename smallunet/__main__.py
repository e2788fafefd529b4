"""python -m smallunet: the training command line (see smallunet.cli)."""
from .cli import main

main()
