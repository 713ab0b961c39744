"""The local service stack: stack.sh, its helpers, and independent instances (instance.py)."""
