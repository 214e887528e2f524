"""Stage 5 — do published numbers hold?

Enters: the run's summary (scores, cost, protocol) and the claims registry (conf/claims/*.yaml).
Leaves: a verdict per claim about the run's model and benchmark with its protocol mismatches
(`verdicts`), the report files claims.md / .html / .png (`report`). `registry` loads and validates
the claims (scores, prices, speeds, model facts); `display` is how one reads in the list, the board and
the report; `python -m harness.claims` (__main__) re-renders a finished run's report or lists them.
"""
