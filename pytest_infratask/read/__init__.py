"""Read: a task file into the model, without running or changing anything."""
