"""trainctl: train, evaluate, export and deploy PaddleDetection models from one CLI.

Importing this package never imports paddle; only worker processes and the
export/infer commands do.
"""

__version__ = "0.1.0"
