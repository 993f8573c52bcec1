"""Dockyard's policy engine: IAM policy language (language.py, conditions.py, patterns.py) and
evaluation (evaluate.py), pure and without I/O."""
