"""Runs the Python client's tests (unittest) and ends with "python: N passed, N failed, N skipped".

    BATCHD_BIN=build/batchd /usr/bin/python3 clients/python/tests/run.py [-v] [pattern]

Every test counts: an error or a failure is a failure. What a test needs,
scripts/deps.sh python installs first; a test of a batchd feature this
batchd lacks (completion webhooks before they land) is skipped, and the
skip is counted on the last line, never hidden.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    verbosity = 2 if "-v" in sys.argv else 1
    names = [a for a in sys.argv[1:] if a != "-v"]
    loader = unittest.TestLoader()
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    result = unittest.TextTestRunner(verbosity=verbosity, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    for test, reason in result.skipped:
        print("skipped: %s: %s" % (test.id(), reason))
    print("python: %d passed, %d failed, %d skipped" % (passed, failed, len(result.skipped)))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
