"""Code that runs inside worker processes (imports paddle and ppdet).

Nothing outside runner/ imports from here except `runner.job`, which is pure.
"""
