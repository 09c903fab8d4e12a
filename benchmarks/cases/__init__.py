"""One module per case; each has ``run(ctx) -> CaseResult``."""
