"""Batch input and output written for other batch APIs, converted to and from Vertex AI's.

:mod:`batchbox.formats.openai` reads OpenAI Batch API lines (chat completions) as Gemini
requests and writes Vertex AI prediction rows in the OpenAI batch output format. Lines of the
Gemini Developer API's batch mode (``{"key": ..., "request": ...}``) need no conversion.
"""

from batchbox.formats.openai import (
    ConversionError,
    ConversionProblem,
    convert_openai_line,
    looks_like_openai_line,
    to_openai_output,
)

__all__ = [
    "ConversionError",
    "ConversionProblem",
    "convert_openai_line",
    "looks_like_openai_line",
    "to_openai_output",
]
