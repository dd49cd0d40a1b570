"""Media resolution: data:/http/file-id/file:// -> bytes, inline bodies, SSRF-checked fetches."""
