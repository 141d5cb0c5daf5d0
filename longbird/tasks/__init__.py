"""Task recipes and the built-in demo (the `longbird` command)."""
