"""The request engine: what every provider shares, apart from the provider adapters. It alone
runs a model call; an adapter only turns one call's messages and parameters into deltas.

* `deltas`: the normalised pieces an adapter yields (`str`, `ThinkingDelta`, `ToolCallDelta`,
  `UsageDelta`, `FinishDelta`), and `CallParams`, what one call sends (hyperparameters, tools,
  response schema): the one vocabulary between adapters and the engine;
* `call`: `call_model`, one model call (budget, observation, pricing, attempts, a composite's
  members), and a standalone `invoke()`/`stream()`;
* `attempts`: one model call's attempts: the total timeout, retries before the first token;
* `fallback`: switching among a fallback chain's or a pool's members within one call;
* `accumulator`: folds one attempt's deltas into an `LMOutput` (pure, no events, no asyncio);
* `lifecycle`: one request's context, its events (`start` .. `done`/`error`) and cancellation;
* `request_stream`: `RequestStream`, the events of exactly one request as an async iterator;
* `approvals`: the approvals a request waits for, and their answers.

The engine imports nothing from `lmstream.invokers`; the adapters import the engine's
`deltas` (and hand a standalone call to `call`). The package itself imports nothing, so
`lmstream.engine.deltas` stays cheap for a provider module.
"""
