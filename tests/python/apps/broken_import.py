"""A module that raises while it is imported (the loader must show this traceback)."""

VALUE = 1
raise RuntimeError("broken_import fails at import time")
