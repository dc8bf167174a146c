"""Runtime plumbing every stage shares: the XLA compilation cache and the console progress line."""
