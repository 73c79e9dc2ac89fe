# Over-the-air updates: bundles, their signatures, the delta, the install and the trial.
