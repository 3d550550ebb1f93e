"""The battery's cases that fail today (strict xfail): case id -> what happens, one line.

The fixes of issue 17 turn them green; a strict xfail that passes fails the run, and its line
must then be removed here.
"""

KNOWN_METHODS = {}

KNOWN_ESTIMATORS = {}

KNOWN_TRAINING = {}

KNOWN_EVALUATION = {}

KNOWN_CLI = {}
