"""`make bench`: what a job costs and how fast the pipeline is, on a freshly deployed local stack."""
