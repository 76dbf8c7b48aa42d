"""Chess from pixels; registration only here (light), the env classes live in submodules."""
