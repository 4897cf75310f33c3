"""jobpipe: a serverless job pipeline (API Gateway + Lambda + SQS + DynamoDB + EventBridge)."""
