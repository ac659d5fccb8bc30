"""Drives Tollgate's /v1/messages with the official `anthropic` SDK and its
/v1/responses with the official `openai` SDK; prints one JSON object of what
it saw. Used by agents.rs."""

import json
import sys

import anthropic
import openai

base_url, api_key, model, fallback_model = sys.argv[1:5]
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
hi = [{"role": "user", "content": "hi"}]


def anthropic_side():
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
    seen = {"models": sorted(m.id for m in client.models.list().data)}

    message = client.messages.create(model=model, max_tokens=64, messages=hi)
    seen["text"] = message.content[0].text
    seen["stop_reason"] = message.stop_reason
    seen["usage"] = [message.usage.input_tokens, message.usage.output_tokens]

    events = []
    with client.messages.stream(model=model, max_tokens=64, messages=hi) as stream:
        for event in stream:
            if event.type in ("message_start", "content_block_start", "content_block_delta",
                              "content_block_stop", "message_delta", "message_stop"):
                events.append(event.type)
        final = stream.get_final_message()
    seen["streamed"] = "".join(b.text for b in final.content if b.type == "text")
    seen["stream_usage"] = [final.usage.input_tokens, final.usage.output_tokens]
    seen["stream_events"] = events

    tools = [{"name": "weather", "description": "The weather in a city", "input_schema": WEATHER}]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.messages.create(model=model, max_tokens=64, messages=ask, tools=tools)
    use = next(b for b in called.content if b.type == "tool_use")
    seen["tool_use"] = [use.name, use.input, called.stop_reason]

    with client.messages.stream(model=model, max_tokens=64, messages=ask, tools=tools) as stream:
        streamed = stream.get_final_message()
    streamed_use = next(b for b in streamed.content if b.type == "tool_use")
    seen["streamed_tool_use"] = [streamed_use.name, streamed_use.input]

    answered = client.messages.create(
        model=model, max_tokens=64, tools=tools,
        messages=ask + [
            {"role": "assistant", "content": [b.model_dump() for b in called.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]},
        ],
    )
    seen["after_tool"] = answered.content[0].text

    try:
        client.messages.create(model="no-such-model", max_tokens=16, messages=hi)
    except anthropic.NotFoundError as e:
        seen["not_found"] = [e.status_code, e.body["error"]["type"]]
    try:
        client.messages.create(model=model, max_tokens=16, messages=hi, extra_body={"temperature": "hot"})
    except anthropic.BadRequestError as e:
        seen["malformed"] = [e.status_code, e.body["error"]["type"]]

    raw = client.messages.with_raw_response.create(model=fallback_model, max_tokens=16, messages=hi)
    seen["fallback_text"] = raw.parse().content[0].text
    seen["fallback_attempts"] = raw.headers.get("x-tollgate-attempts")

    try:
        anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0).messages.create(
            model=model, max_tokens=16, messages=hi)
    except anthropic.AuthenticationError as e:
        seen["auth"] = [e.status_code, e.body["error"]["type"]]

    seen["count_tokens"] = client.messages.count_tokens(model=model, messages=ask, tools=tools).input_tokens
    return seen


def responses_side():
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
    seen = {}
    response = client.responses.create(model=model, input="hi", instructions="Be brief.")
    seen["text"] = response.output_text
    seen["usage"] = [response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens]

    events, parts, status = [], [], None
    for event in client.responses.create(model=model, input="hi", stream=True):
        events.append(event.type)
        if event.type == "response.output_text.delta":
            parts.append(event.delta)
        if event.type == "response.completed":
            status = event.response.status
    seen["streamed"] = "".join(parts)
    seen["stream_events"] = events
    seen["stream_status"] = status

    tools = [{"type": "function", "name": "weather", "description": "The weather in a city", "parameters": WEATHER}]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model=model, input=ask, tools=tools)
    call = next(item for item in called.output if item.type == "function_call")
    seen["call"] = [call.type, call.name, json.loads(call.arguments), call.call_id]

    call_events, arguments = [], None
    for event in client.responses.create(model=model, input=ask, tools=tools, stream=True):
        call_events.append(event.type)
        if event.type == "response.output_item.done" and event.item.type == "function_call":
            arguments = [event.item.name, event.item.arguments]
    seen["streamed_call_events"] = call_events
    seen["streamed_call"] = arguments

    answered = client.responses.create(
        model=model, tools=tools,
        input=ask + [
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C"},
        ],
    )
    seen["after_call"] = answered.output_text

    try:
        client.responses.create(model="no-such-model", input="hi")
    except openai.NotFoundError as e:
        seen["not_found"] = [e.status_code, e.body["code"]]
    try:
        client.responses.create(model=model, input=42)
    except openai.BadRequestError as e:
        seen["malformed"] = [e.status_code, e.body["param"]]
    try:
        client.responses.create(model=model, input="hi", previous_response_id="resp_earlier")
    except openai.BadRequestError as e:
        seen["stateful"] = [e.status_code, e.body["param"]]

    raw = client.responses.with_raw_response.create(model=fallback_model, input="hi")
    seen["fallback_text"] = raw.parse().output_text
    seen["fallback_provider"] = raw.headers.get("x-tollgate-provider")
    seen["fallback_skipped"] = raw.headers.get("x-tollgate-skipped")
    return seen


print(json.dumps({"anthropic": anthropic_side(), "responses": responses_side()}))
