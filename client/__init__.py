"""The requests-based client: feature tour and concurrent bank check."""
