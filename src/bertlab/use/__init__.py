"""Using a trained model: eval, predict, serve, export, shrink, explain."""
