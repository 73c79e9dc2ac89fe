# Over-the-air updates: bundles, their signatures and the delta.
