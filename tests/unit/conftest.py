"""Unit tests: pure logic, no database server and no processes of ours (the root conftest.py's
clean environment applies)."""
