"""Run the tests without installing the plugins: this one, and tallyio-arbitrage it builds on."""
import os
import sys

_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(_here), "tallyio-arbitrage"))
sys.path.insert(0, _here)
