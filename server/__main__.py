"""``python -m server``: the same as the ``spatial-mllm-serve`` command."""

from server.runtime.cli import main

if __name__ == "__main__":
    main()
