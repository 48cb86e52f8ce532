"""Dell warranty connector: warranty look-ups by service tag -> asset warranty fields."""
