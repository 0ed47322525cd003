"""The operators' and users' web dashboard at /dashboard: server-rendered page shells
(Jinja2) whose scripts call the same /api/v1 with the user's bearer token (kept in
sessionStorage), so every figure and action passes the API's own role checks; there is no
second authorization path. Every asset is served from this package (no CDN)."""
