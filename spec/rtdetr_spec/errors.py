"""Errors raised while reading an experiment spec.

Every error names the dotted key path (``dataset.train_data_sources.0.image_dir``) so that a
user reading a pod's log, a CR's status message or a terminal knows which line of which YAML
to fix. The operator turns these messages into ``Stalled`` conditions verbatim, so every
problem is passed through :func:`rtdetr_spec.redact.redact_text` here, where it is built: no
consumer ever sees a secret-like value (``encryption_key=...``) quoted back.
"""

from __future__ import annotations

from rtdetr_spec.redact import redact_text


class SpecError(ValueError):
    """A spec (file, override or value) that cannot be used.

    Attributes:
        problems: one human-readable line per problem, each starting with the key path.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None) -> None:
        given = [problems] if isinstance(problems, str) else list(problems)
        self.problems = [redact_text(str(p)) for p in given]
        self.source = source
        head = f"invalid experiment spec {source}" if source else "invalid experiment spec"
        body = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head}:\n{body}")


class MissingValueError(SpecError):
    """A key the task needs is still ``??`` (required and not set)."""

    def __init__(self, keys: list[str], *, task: str) -> None:
        self.keys = list(keys)
        self.task = task
        problems = [
            f"{k}: required by `{task}` but not set (it is `??`); set it in the spec or pass "
            f"{k}=<value> on the command line"
            for k in self.keys
        ]
        super().__init__(problems)
