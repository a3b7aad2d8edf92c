"""refine: a promoted source -> physical parameters from a coherent fit over its segments."""
