"""Run the tests without installing the plugin: put its directory, and the tests' own helper
modules (the reference processor), first on sys.path."""
import os
import sys

_tests = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _tests)
sys.path.insert(0, os.path.dirname(_tests))
