"""The interaction input adapters beyond llmrca's own format; importing this registers them.

``openai-chat`` (OpenAI chat-completions logs), ``otel-genai`` (OpenTelemetry GenAI spans as OTLP
JSON), ``otel-genai-logs`` (OpenTelemetry GenAI log events as OTLP JSON), ``openinference``
(OpenInference spans as OTLP JSON) and ``garak`` (garak ``report.jsonl``). docs/adapters.md describes what each one reads.
"""

from llmrca.ingest import garak, openai_chat, openinference, otel_genai, otel_logs  # noqa: F401
