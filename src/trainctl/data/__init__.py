"""Datasets without paddle: the synthetic sample (sample.py) and dataset checks."""
