"""Code the tests share that the package must not ship: reference-weight loading, the CLI fault runner, a distributed worker."""
