import sys

from .device import main

sys.exit(main())
