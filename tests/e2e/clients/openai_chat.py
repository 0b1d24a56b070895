"""A chat completion with the openai SDK, plain or streamed (`stream` argument); proxy and
CA come from the environment (`shield env`). Streamed pieces are printed as they arrive."""

import json
import sys

from openai import OpenAI

base_url, mode = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="sk-fake-key-for-tests", max_retries=0, timeout=60)
messages = [{"role": "user", "content": "Say hello"}]
if mode == "stream":
    for chunk in client.chat.completions.create(model="fake-gpt", messages=messages, stream=True):
        print(json.dumps({"piece": chunk.choices[0].delta.content}), flush=True)
    print(json.dumps({"done": True}), flush=True)
else:
    reply = client.chat.completions.create(model="fake-gpt", messages=messages)
    print(json.dumps({"id": reply.id, "content": reply.choices[0].message.content}))
