"""bookingtime's auth server and App API, emulated inside the sandbox (reference: the App SDK).

`store` holds the state, `auth` the token flow, `appointments`, `resources` and
`availability_exceptions` the App API routes, `router` wires them into the sandbox's app, and
`control` (with `control_router` over HTTP) steers it all from tests, the demo and benchmarks."""
