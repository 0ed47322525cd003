"""HTTP plumbing below the endpoints and above the domains: dependencies, middleware
(Idempotency-Key, limits, security headers) and the simulators' browser endpoints."""
