"""kernelnets runtime: IR, passes, memory planner, executors, model zoo, importers, CLI."""
