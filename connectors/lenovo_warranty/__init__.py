"""Lenovo warranty connector: warranty look-ups by serial -> asset warranty fields."""
