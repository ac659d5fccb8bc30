"""Drives every non-chat endpoint, and a tool call through the Anthropic
adapter, with the official OpenAI Python client; prints one JSON object of
what it saw. Used by openai_client.rs."""

import base64
import io
import json
import sys

import openai

base_url, api_key = sys.argv[1:3]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
seen = {}

embedding = client.embeddings.create(model="local-embed", input=["a", "b"])
seen["embedding"] = embedding.data[0].embedding
seen["embedding_tokens"] = embedding.usage.prompt_tokens

# The client asks for base64 by default when numpy is around; ask explicitly.
b64 = client.embeddings.create(model="cohere-embed", input="a", encoding_format="base64")
seen["b64_embedding"] = b64.data[0].embedding

with client.audio.speech.with_streaming_response.create(
    model="local-tts", voice="af_heart", input="Hello there."
) as speech:
    seen["speech_type"] = speech.headers.get("content-type")
    seen["speech_bytes"] = len(speech.read())

audio = io.BytesIO(bytes(range(256)) * 64)
audio.name = "clip.wav"
transcript = client.audio.transcriptions.create(model="local-whisper", file=audio, language="en")
seen["transcript"] = transcript.text
srt = client.audio.transcriptions.create(
    model="local-whisper", file=("clip.wav", bytes(16)), response_format="srt"
)
seen["srt"] = srt

image = client.images.generate(model="local-image", prompt="a red fox", response_format="b64_json")
seen["image"] = base64.b64decode(image.data[0].b64_json)[:4].hex()

completion = client.chat.completions.create(
    model="claude",
    messages=[{"role": "user", "content": "Weather in Paris?"}],
    tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
)
call = completion.choices[0].message.tool_calls[0]
seen["tool_call"] = [call.function.name, json.loads(call.function.arguments)]
seen["finish_reason"] = completion.choices[0].finish_reason

try:
    client.embeddings.create(model="claude", input="x")
except openai.BadRequestError as e:
    seen["wrong_mode"] = e.body["message"] if isinstance(e.body, dict) else str(e.body)

print(json.dumps(seen))
