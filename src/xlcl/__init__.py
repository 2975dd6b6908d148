"""xlcl: cross-lingual continual learning on MASSIVE slot filling.

Run one experiment with ``xlcl run configs/demo/quick/vanilla.yaml``; see the README.
"""

__version__ = "0.1.0"
