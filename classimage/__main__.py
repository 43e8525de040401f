import sys

from classimage.cli import main

sys.exit(main())
