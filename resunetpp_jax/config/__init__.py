"""The configuration: every key with its default (`defaults`), and the checks that run before anything is built."""
