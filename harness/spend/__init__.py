"""Stage 3 — what the requests cost.

Enters: a request and the usage its response reported, the model's pricing block. Leaves: dollars
at the price in force when the response completed (`pricing`, incl. time-of-day windows and
GPU-hour costing), the go/no-go of the budget guard and dry-run estimates (`budget`), and the
provider's billed balance against ours (`billing`).
"""
