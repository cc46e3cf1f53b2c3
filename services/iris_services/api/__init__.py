"""The model API: serves the champion, hot-swapped when the alias moves."""
