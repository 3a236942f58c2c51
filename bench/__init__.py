"""Benchmarks: what durability costs, measured against bare Celery in the same run.

python -m bench            # the full run (under 10 minutes on 2 cores)
python -m bench --smoke    # a small run for CI, so the benchmark cannot rot
"""
