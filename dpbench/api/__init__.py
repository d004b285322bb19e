"""The plugin API: hook specifications, the interface types a plugin sees, and the plugin registry."""
