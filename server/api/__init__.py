"""The HTTP surface: routes, OpenAI schemas, middleware, health."""
