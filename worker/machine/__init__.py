"""The state machine's verbs. Each verb is one transaction; none of them sends messages.

A verb returns the steps it made ready (``StepMessage``s); the caller sends them with
``worker.dispatch`` after the commit.
"""
