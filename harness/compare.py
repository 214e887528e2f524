"""`python -m harness.compare`: this run against a baseline (the comparison lives in harness.records.compare)."""

import sys

from harness.records.compare import main

if __name__ == "__main__":
    sys.exit(main())
