"""Connection and employee domain tests."""
