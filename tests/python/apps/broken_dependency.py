"""A module whose own import of a missing dependency fails (not "module not found")."""

import tidegate_test_missing_dependency  # noqa: F401

application = None
