"""Stage 3 — what the requests cost.

Enters: a request and the usage its response reported, the model's pricing (a price-book entry or
inline prices). Leaves: dollars at the period, time-of-day window and batch rate in force when the
response completed (`price_book`, over `pricing`'s tokens-to-dollars and GPU-hour costing), a price
claim's verdict on its date (`price_claims`), the go/no-go of the budget guard (`budget`), the
cheapest way to run a plan (`dry_run`, `off_peak`), and the provider's billed balance against ours
(`billing`).
"""
