"""The innermost cause of an exception: libraries wrap the error a person can act on (a parser's, the
disk's) in their own (datasets' DatasetGenerationError, MLflow's MlflowException over SQLAlchemy's)."""

from __future__ import annotations


def root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (exc.__cause__ or exc.__context__) is not None and id(exc.__cause__ or exc.__context__) not in seen:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen.add(id(exc))
    return exc
