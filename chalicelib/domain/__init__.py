"""The domain core: job model, status rules, job-type registry. No boto3, no environment reads."""
