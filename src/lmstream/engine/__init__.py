"""The request engine: what every provider shares, apart from the provider adapters.

* `deltas`: the normalised pieces an adapter yields (`str`, `ThinkingDelta`, `ToolCallDelta`,
  `UsageDelta`, `FinishDelta`), the one vocabulary between adapters and the engine;
* `accumulator`: folds one attempt's deltas into an `LMOutput` (pure, no events, no asyncio);
* `lifecycle`: one request's context, its events (`start` .. `done`/`error`) and cancellation;
* `request_stream`: `RequestStream`, the events of exactly one request as an async iterator.

The engine imports nothing from `lmstream.invokers`; the adapters import the engine. The
package itself imports nothing, so `lmstream.engine.deltas` stays cheap for a provider module.
"""
