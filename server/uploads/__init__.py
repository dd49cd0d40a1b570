"""The upload store behind the Files API."""
