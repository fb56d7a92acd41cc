"""Curate's quality benchmark: a ground-truth dataset built from RSSCN7, scoring, and a plain-fastdup baseline."""
