"""batchbox: Gemini batch prediction on Google Cloud, from a dropped JSONL file to a CloudEvent."""

__version__ = "0.1.0"
