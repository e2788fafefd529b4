"""Plotting helpers for the book, one module per chapter; each function returns a
matplotlib Figure so that a chapter stays short and says what to look at."""
