"""Stage 2 — asking the model.

Enters: chat requests built by lm-eval from a task's documents. Leaves: completions with their exact
usage and cost, one `common.exchange.ResponseRecord` (or `SampleError`) per request, tied to its
document. `adapter` is the lm-eval LM that fans requests out through the response `cache`, the
budget and pricing (stage 3), and one endpoint per way of reaching a model: `openai_compat`,
`anthropic_native`, `replay` (saved outputs), `local_server` (managed llama.cpp / vLLM), sharing
`concurrency` (the adaptive limiter), `retries` (our retry policy), `usage_checks` (usage as untrusted
input), `openai_format` / `openai_stream` (the OpenAI dialect, plain and streamed) and `base` (the
Endpoint protocol and its errors). With model.batch, `batch` (journal and runner) sends the uncached
requests through `batch_apis` (OpenAI Batch API, Anthropic Message Batches) into the same cache first.
"""
