"""Wrap any test app in ``wsgiref.validate.validator``.

The server runs ``validated:wrap('module:attr')`` (the factory form of APP), so every
well-behaved test app is also checked against PEP 3333 by the standard library: an
``AssertionError`` from the validator turns the response into a 500 and lands in the
server log, which the test harness then reports as a failure.
"""

import importlib
from wsgiref.validate import validator


def wrap(spec):
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    return validator(getattr(module, attr or "app"))
