"""A minimal Django project (no database) served by tidegate in test_frameworks.py."""
