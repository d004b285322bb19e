"""dpbench's built-in plugins: methods, pairs, evaluators, scopes, backbones and published numbers.

Each module here is registered through the "dpbench" entry-point group in pyproject.toml, exactly as a third
party's plugin is; the core never imports this package.
"""
