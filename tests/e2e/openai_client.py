"""Drives Tollgate with the official OpenAI Python client; prints one JSON
object of what it saw. Used by openai_client.rs."""

import json
import sys

import openai

base_url, api_key, model, fallback_model = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
seen = {}

seen["models"] = [m.id for m in client.models.list().data]

raw = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "hi"}]
)
completion = raw.parse()
seen["text"] = completion.choices[0].message.content
seen["usage"] = completion.usage.total_tokens
seen["provider"] = raw.headers.get("x-tollgate-provider")

stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.total_tokens
seen["streamed"] = "".join(parts)
seen["stream_usage"] = usage

fallback = client.chat.completions.with_raw_response.create(
    model=fallback_model, messages=[{"role": "user", "content": "hi"}]
)
seen["fallback_text"] = fallback.parse().choices[0].message.content
seen["fallback_attempts"] = fallback.headers.get("x-tollgate-attempts")

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as e:
    seen["not_found"] = e.body["code"] if isinstance(e.body, dict) else str(e.body)

try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
except openai.AuthenticationError:
    seen["auth"] = "rejected"

print(json.dumps(seen))
