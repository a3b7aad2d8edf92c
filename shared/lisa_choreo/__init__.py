"""lisa-choreo: the application: CLI, the deployment's topology, the local stack, the demo."""
