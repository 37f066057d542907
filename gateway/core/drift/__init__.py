"""Live accuracy: shadow comparisons and the drift monitor."""
