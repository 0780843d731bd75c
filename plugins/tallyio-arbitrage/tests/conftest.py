"""Run the tests without installing the plugin: put its directory, and the tests' own helper
modules (the reference processor), first on sys.path. The mainnet equivalence tests decode the
fixture blocks with tallyio-mainnet's decoder (test data only; the plugin itself needs nothing
but tallyio), found beside this plugin when it is not installed."""
import os
import sys

_tests = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _tests)
sys.path.insert(0, os.path.dirname(_tests))
_mainnet = os.path.join(os.path.dirname(os.path.dirname(_tests)), "tallyio-mainnet")
if os.path.isdir(_mainnet):
    sys.path.append(_mainnet)
