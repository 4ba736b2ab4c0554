"""The ``aqueue`` command line."""
