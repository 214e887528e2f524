"""Below every stage: what several stages share, so each reaches it by importing downward.

`exchange`: the typed records that cross stage boundaries (ChatRequest, Completion, Usage,
ResponseRecord, SampleError); `doc_key`: a document's stable key; `stats`: intervals, bootstrap,
pass@k, power; `headline`: which task's score is a run's headline; `errors`: an exception's root
cause. Imports nothing of ours.
"""
