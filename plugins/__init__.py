"""dpbench's built-in plugins (imported as `dpbench_plugins`), registered through the "dpbench" entry-point
group exactly as a third party's would be."""
