import sys

from bench.fuzz.driver import main

sys.exit(main())
