"""The embedded model's engine: continuous batching on llama.cpp's low-level API.

* `native`: the model, its context and KV memory through llama-cpp-python's ctypes API;
* `chat`: the chat template and the thread defaults;
* `sampling`: one C sampler chain per request (penalties, grammar, top-k/p, seed);
* `text`: token bytes -> text deltas (UTF-8 across tokens, stop sequences);
* `scheduler`: slots, the FIFO queue, prefix reuse and the plan of one step;
* `engine`: the long-lived thread running one `llama_decode` per step.

`lmstream.invokers.local.LocalLMInvoker` is the adapter; nothing here knows about events.
Nothing here imports `llama_cpp` until a model is loaded.
"""
