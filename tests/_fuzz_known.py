"""The strict xfails of tests/test_fuzz.py: case id -> why it fails here.

Empty: every case of issue 18 is fixed.  A case that fails on a branch while being fixed
elsewhere goes here (a fixed case turns into XPASS, a failure, strict, and its line must then
be removed).
"""
KNOWN: dict = {}
