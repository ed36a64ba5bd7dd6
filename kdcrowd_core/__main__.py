"""``python -m kdcrowd_core ...`` runs the ``kdcrowd`` command (what ``torchrun`` launches)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
